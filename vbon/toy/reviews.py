"""The toy-sentiment language: a synthetic movie-review grammar with sentiment and negation.

A review is a few sentences. Each sentence comes from one of a fixed set of templates whose slots are
filled from word lists; opinion templates carry one sentiment word (adjective, verb, verdict noun,
rating or stock phrase) whose polarity an optional "not" flips, and "X was good, but Y was bad"
takes the polarity of the clause after "but". A review's label is the sign of the sum of its
sentence polarities, so the label is a function of the text: :func:`parse_review` recovers it, and
the same parser measures how often a language model's samples stay inside the language.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# -- lexicon -------------------------------------------------------------------------------------
# Word lists are wide on purpose: a BPE tokenizer trained on a narrow vocabulary would have a few
# hundred tokens, and the reward models and policies of the paper live in a vocabulary of thousands.

POS_ADJ = """great wonderful brilliant superb excellent fantastic beautiful moving charming delightful
gripping clever witty stunning powerful touching hilarious memorable engaging thrilling magnificent
enjoyable heartfelt inventive masterful compelling elegant fresh original riveting tender uplifting
vivid warm wise remarkable outstanding splendid terrific marvelous lovely gorgeous haunting absorbing
captivating dazzling exquisite flawless graceful inspired intelligent joyful luminous nuanced
poignant radiant refreshing rich satisfying sharp sincere smart stylish subtle sublime thoughtful
triumphant unforgettable vibrant wondrous admirable affecting ambitious astonishing authentic bold
breathtaking confident dynamic electric entertaining fascinating funny genuine impressive lively
lyrical mesmerizing perfect playful polished precise rewarding sensitive spirited striking sweet
timeless balanced brave crisp coherent cheerful good amazing excellent enchanting sparkling""".split()

NEG_ADJ = """awful terrible boring dull weak clumsy bland tedious lifeless painful predictable silly
shallow messy pointless stiff flat forgettable lazy tiresome dreadful horrible annoying awkward cheap
confusing dismal dreary empty feeble hollow incoherent inept joyless lame lousy mediocre monotonous
muddled noisy overlong pathetic plodding poor pretentious ridiculous sloppy sluggish stale stupid
tasteless thin tired ugly unbearable uneven unfunny unwatchable vapid wooden worthless clunky bloated
cliched contrived crude derivative disappointing forced grating insipid irritating laughable limp
listless mindless muddy nasty numbing sour shoddy slow soulless tacky trite unconvincing uninspired
unpleasant weary witless banal corny dire drab fake bad dumb hackneyed lackluster murky
overwrought""".split()

INTENSIFIER = """really truly quite very so rather utterly completely absolutely genuinely surprisingly
remarkably extremely incredibly fairly deeply simply pretty thoroughly wildly""".split()

ASPECT_SG = (
    """acting script plot story dialogue direction soundtrack score music cinematography editing
pacing ending opening cast lead villain hero heroine humor tone premise screenplay lighting writing
action finale climax romance twist atmosphere photography production sound makeup choreography
narration chemistry casting setting animation design""".split()
    + [
        "camera work",
        "set design",
        "final act",
        "first half",
        "second half",
        "main character",
        "love story",
    ]
)

ASPECT_PL = (
    """performances characters visuals effects costumes songs jokes scenes sets actors stunts
fights dialogues landscapes effects""".split()
    + ["action scenes", "supporting roles", "musical numbers"]
)

FILM = (
    """film movie picture flick documentary comedy drama thriller western musical sequel remake
feature romance cartoon mystery adaptation biopic""".split()
    + ["horror film", "war film"]
)

CHAR_ADJ = """lonely young old retired shy reckless grieving stubborn restless wealthy
penniless widowed nervous curious quiet famous forgotten exiled wounded elderly teenage married
divorced orphaned blind disgraced determined jealous loyal mysterious secretive struggling talented
troubled unemployed ailing aging idealistic cynical devout naive proud rebellious gifted homeless
heartbroken reluctant stranded""".split()

CHAR_NOUN = """sailor detective teacher nurse farmer soldier painter boxer pilot baker lawyer doctor
musician singer dancer writer poet priest nun thief spy chef miner fisherman widow orphan student
professor journalist reporter photographer banker clerk mechanic carpenter gardener waitress
astronaut scientist inventor engineer architect sheriff outlaw cowboy gambler hunter ranger princess
prince king queen knight wizard witch vampire ghost robot alien mother father daughter son brother
sister grandmother grandfather uncle aunt cousin stranger neighbor drifter smuggler pirate captain
surgeon therapist librarian janitor salesman magician clown athlete coach swimmer climber driver
courier hacker mayor senator judge prisoner guard monk explorer shepherd tailor butcher blacksmith
violinist pianist composer novelist playwright""".split()

PLOT_VERB = (
    """finds loses steals hides chases discovers inherits buys sells builds destroys guards
delivers follows protects investigates rescues betrays meets marries fights befriends writes paints
repairs opens visits leaves joins tracks smuggles wins burns buries forges tames trains adopts
sketches photographs decodes climbs crosses explores defends restores abandons recovers uncovers
unlocks breaks carries seeks fears haunts""".split()
    + [
        "searches for",
        "escapes from",
        "returns to",
        "dreams of",
    ]
)

OBJ_ADJ = """stolen secret ancient broken golden hidden cursed rusty silver strange tiny giant
abandoned haunted sealed missing rare priceless borrowed burning frozen lost magic coded faded antique
enchanted forbidden fragile precious shattered sunken buried crystal iron velvet""".split()

OBJECT = """map letter diary key treasure painting violin necklace ring sword crown horse dog cat
boat ship car train house farm castle bakery restaurant hotel factory mine island village garden
fortune recipe photograph suitcase briefcase notebook manuscript formula weapon bomb virus statue
mirror clock watch lamp book camera radio telescope compass fossil coin jewel diamond emerald ruby
pearl bracelet mask costume guitar piano drum trumpet wallet passport ticket medal trophy flag banner
bridge tower lighthouse tunnel cave temple tomb vault safe locket puzzle riddle code signal message
tape recording portrait tapestry chest crate barrel bottle potion scroll spellbook orchard vineyard
cottage cabin""".split()

PLACE = """Paris London Tokyo Rome Berlin Madrid Lisbon Vienna Prague Dublin Oslo Helsinki Stockholm
Warsaw Budapest Athens Istanbul Cairo Nairobi Lagos Mumbai Delhi Bangkok Seoul Beijing Shanghai
Sydney Melbourne Auckland Toronto Montreal Vancouver Chicago Boston Seattle Denver Houston Dallas
Miami Atlanta Detroit Phoenix Memphis Nashville Brooklyn Harlem Naples Venice Florence Milan
Marseille Lyon Geneva Zurich Amsterdam Brussels Edinburgh Glasgow Cardiff Belfast Havana Lima
Bogota Santiago Caracas Quito Manila Jakarta Hanoi Kyoto Osaka Moscow Kiev Riga Tallinn Reykjavik
Alaska Texas Montana Nevada Oregon Vermont Maine Ohio Kansas Sicily Provence Tuscany Bavaria Siberia
Mongolia Patagonia Morocco Tangier Marrakesh Casablanca Alexandria Jerusalem Baghdad Tehran Kabul
Calcutta Lahore Dakar Accra Havana Kingston Montevideo Valparaiso Cusco Anchorage Honolulu
Louisiana Wyoming Yorkshire Cornwall Normandy Brittany Andalusia Crete Corsica Sardinia""".split()

FIRST = """James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara
Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty
Mark Margaret Donald Sandra Steven Ashley Paul Kimberly Andrew Emily Joshua Donna Kenneth Michelle
Kevin Dorothy Brian Carol George Amanda Edward Melissa Ronald Deborah Timothy Stephanie Jason Rebecca
Jeffrey Sharon Ryan Laura Jacob Cynthia Gary Kathleen Nicholas Amy Eric Shirley Jonathan Angela
Stephen Helen Larry Anna Justin Brenda Scott Pamela Brandon Nicole Frank Emma Benjamin Samantha
Gregory Katherine Raymond Christine Samuel Debra Patrick Rachel Alexander Catherine Jack Carolyn
Dennis Janet Jerry Ruth Tyler Maria Aaron Heather Henry Diane Douglas Virginia Peter Julie Adam
Joyce Nathan Victoria Zachary Olivia Walter Kelly Kyle Christina Harold Lauren Carl Joan Jeremy
Evelyn Keith Judith Roger Megan Gerald Cheryl Ethan Andrea Arthur Hannah Terry Martha Christian
Jacqueline Sean Frances Lawrence Gloria Austin Ann Joe Teresa Noah Kathryn Jesse Sara Albert Janice
Bryan Jean Billy Alice Bruce Madison Willie Doris Jordan Abigail Dylan Julia Alan Judy Ralph Grace
Gabriel Denise Roy Amber Juan Marilyn Wayne Beverly Eugene Danielle Logan Theresa Randy Sophia Louis
Marie Russell Diana Vincent Brittany Philip Natalie Bobby Isabella Johnny Charlotte Bradley Rose
Marta Ingrid Yuki Akira Pierre Sofia Luca Mateo Chiara Ahmed Fatima Ravi Priya Omar Leila Kenji
Hiroshi Mei Chen Lars Astrid Dmitri Olga Jamal Aisha Diego Lucia""".split()

LAST = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez
Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green
Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz
Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan
Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood
James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster
Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Fisher Vasquez
Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace West Cole Hayes
Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison
Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns
Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks
Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt
Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kowalski Novak
Rossi Bianchi Dubois Lefevre Tanaka Suzuki Yamamoto Larsen Nilsson Petrov Ivanova Okafor Mensah
Haddad Khan Singh Gupta Moreau Schneider Fischer Weber Becker Hoffmann""".split()

TIME = [
    "last night",
    "last weekend",
    "yesterday",
    "on a rainy afternoon",
    "at a festival",
    "on a long flight",
    "on television",
    "at the cinema",
    "on a Sunday morning",
    "on a whim",
    "after work",
    "on a date",
    "at a friend's house",
    "over the holidays",
    "in high school",
    "years ago",
    "on opening night",
    "at a drive-in",
    "on a train",
    "during a storm",
]

COMPANION = """wife husband kids friends mother father sister brother roommate girlfriend boyfriend
class grandparents family parents neighbors coworkers son daughter""".split()

VERB_PAST_POS = (
    "loved adored enjoyed liked admired treasured relished savored cherished appreciated".split()
)
VERB_PAST_NEG = "hated loathed disliked despised detested resented regretted endured".split()
VERB_BASE_POS = "love enjoy like admire appreciate".split()
VERB_BASE_NEG = "hate mind regret".split()

VERDICT_POS = """masterpiece triumph gem delight joy marvel classic winner knockout revelation
pleasure wonder achievement""".split()
VERDICT_NEG = (
    """disaster mess bore failure letdown dud chore disgrace embarrassment catastrophe flop
trainwreck travesty""".split()
    + ["waste of time"]
)

RATING = "one two three four five six seven eight nine ten".split()

PHRASE_POS = [
    "Go see it",
    "Do not miss it",
    "See it on the big screen",
    "Watch it twice",
    "Bring tissues",
    "Highly recommended",
    "Worth every minute",
]
PHRASE_NEG = [
    "Avoid it at all costs",
    "Save your money",
    "Do not waste your time on it",
    "Skip this one",
    "Stay home",
    "Not worth the ticket",
    "What a waste",
]

AUDIENCE = [
    "anyone",
    "everyone",
    "my friends",
    "families",
    "fans of the genre",
    "children",
    "teenagers",
    "adults",
    "film students",
    "my parents",
    "couples",
]

OVERALL = ["Overall", "All in all", "In the end", "Honestly", "To be fair", "In short"]

SLOTS: dict[str, list[str]] = {
    "adj": sorted(set(POS_ADJ) | set(NEG_ADJ)),
    "intens": INTENSIFIER,
    "aspect": ASPECT_SG,
    "aspects": ASPECT_PL,
    "film": FILM,
    "cadj": CHAR_ADJ,
    "char": CHAR_NOUN,
    "verb": PLOT_VERB,
    "oadj": OBJ_ADJ,
    "obj": OBJECT,
    "place": PLACE,
    "first": FIRST,
    "last": LAST,
    "time": TIME,
    "companion": COMPANION,
    "vpast": VERB_PAST_POS + VERB_PAST_NEG,
    "vbase": VERB_BASE_POS + VERB_BASE_NEG,
    "verdict": VERDICT_POS + VERDICT_NEG,
    "rating": RATING,
    "phrase": PHRASE_POS + PHRASE_NEG,
    "audience": AUDIENCE,
    "overall": OVERALL,
    "was": ["was", "is"],
    "were": ["were", "are"],
    "not": ["not"],
    "a": ["a", "an"],
}

POLARITY: dict[str, int] = {
    **dict.fromkeys(POS_ADJ + VERB_PAST_POS + VERB_BASE_POS + VERDICT_POS + PHRASE_POS, 1),
    **dict.fromkeys(NEG_ADJ + VERB_PAST_NEG + VERB_BASE_NEG + VERDICT_NEG + PHRASE_NEG, -1),
    **dict.fromkeys(RATING[:4], -1),
    **dict.fromkeys(RATING[6:], 1),
}


@dataclass(frozen=True)
class Template:
    """One sentence shape: ``{slot}`` placeholders, ``{slot?}`` optional (followed by a space).

    ``focus`` names the slot whose word carries the sentence's polarity (None: neutral sentence);
    ``negator`` names the optional ``not`` slot that flips it. A trailing digit distinguishes two
    slots of the same word list (``{adj2}``).
    """

    pattern: str
    focus: str | None = None
    negator: str | None = None


NEUTRAL = (
    Template("I watched this {film} {time}."),
    Template("I saw this {film} {time} with my {companion}."),
    Template("{first} {last} plays {a} {cadj} {char} who {verb} {a2} {oadj} {obj} in {place}."),
    Template("The story follows {a} {cadj} {char} in {place}."),
    Template("It was directed by {first} {last}."),
    Template("The {film} is set in {place}."),
    Template("{first} {last} stars as {a} {cadj} {char}."),
)

OPINION = (
    Template("The {aspect} {was} {not?}{intens?}{adj}.", "adj", "not"),
    Template("The {aspects} {were} {not?}{intens?}{adj}.", "adj", "not"),
    Template("I {intens?}{vpast} this {film}.", "vpast"),
    Template("I did {not} {vbase} this {film}.", "vbase", "not"),
    Template("This {film} is {not?}{a} {verdict}.", "verdict", "not"),
    Template("What {a} {adj} {film}!", "adj"),
    Template("{first} {last} {was} {not?}{intens?}{adj} as the {char}.", "adj", "not"),
    Template("The {aspect} {was} {adj}, but the {aspect2} {was2} {not?}{adj2}.", "adj2", "not"),
    Template("I would {not?}recommend it to {audience}.", "recommend", "not"),
    Template("{phrase}.", "phrase"),
    Template("I give it {rating} out of ten.", "rating"),
    Template("{overall}, the {film} {was} {not?}{intens?}{adj}.", "adj", "not"),
)

TEMPLATES = NEUTRAL + OPINION
CONSISTENCY = 0.95

_SLOT = re.compile(r"\{([a-z]+?)(\d?)(\?)?\}")


def _category(slot: str) -> str:
    return slot.rstrip("0123456789")


def _alternation(words: list[str]) -> str:
    # Longest first so that "horror film" wins over "horror" in a regex alternation.
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _SLOT.finditer(pattern):
        out.append(re.escape(pattern[pos : m.start()]))
        name, optional = m.group(1) + m.group(2), bool(m.group(3))
        group = f"(?P<{name}>{_alternation(SLOTS[m.group(1)])})"
        out.append(f"(?:{group} )?" if optional else group)
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out))


def _polarity(template: Template, slots: dict[str, str | None]) -> int:
    if template.focus is None:
        return 0
    # "I would recommend it" has no sentiment word: the sentence is positive unless negated.
    base = 1 if template.focus == "recommend" else POLARITY.get(slots.get(template.focus) or "", 0)
    flipped = template.negator is not None and slots.get(template.negator) is not None
    return -base if flipped else base


def _fill(template: Template, rng: np.random.Generator) -> tuple[str, int]:
    slots: dict[str, str | None] = {}
    negators = []
    for m in _SLOT.finditer(template.pattern):
        name, optional = m.group(1) + m.group(2), bool(m.group(3))
        if optional and m.group(1) == "not":
            negators.append(name)
            continue
        if optional and rng.random() < 0.65:
            slots[name] = None
            continue
        words = SLOTS[m.group(1)]
        slots[name] = words[int(rng.integers(len(words)))]
    # As in real reviews, "not great" is common and "not terrible" rarer.
    focus_polarity = POLARITY.get(slots.get(template.focus or "") or "", 1)
    for name in negators:
        slots[name] = "not" if rng.random() < (0.3 if focus_polarity > 0 else 0.1) else None

    def render(m: re.Match[str]) -> str:
        name, optional = m.group(1) + m.group(2), bool(m.group(3))
        word = slots[name]
        if word is None:
            return ""
        return word + " " if optional else word

    text = _SLOT.sub(render, template.pattern)
    # Articles agree with the next word; done after filling because the next word is random.
    text = re.sub(
        r"\b(a|an) (\w)",
        lambda m: ("an " if m.group(2) in "aeiouAEIOU" else "a ") + m.group(2),
        text,
    )
    text = text[0].upper() + text[1:]
    return text, _polarity(template, slots)


def sentence(rng: np.random.Generator, polarity: int) -> str:
    """A random sentence of the given polarity (-1, 0 or +1)."""
    if polarity not in (-1, 0, 1):
        raise ValueError(f"polarity must be -1, 0 or 1, got {polarity!r}")
    pool = NEUTRAL if polarity == 0 else OPINION
    while True:
        text, pol = _fill(pool[int(rng.integers(len(pool)))], rng)
        if pol == polarity:
            return text


def generate_review(rng: np.random.Generator, consistency: float = CONSISTENCY) -> tuple[str, int]:
    """One review and its label (1 positive, 0 negative).

    The writer has an opinion ``s``; each opinion sentence agrees with it with probability
    ``consistency``, so some reviews are mixed, and the label is what the sentences add up to,
    not ``s`` (a tie gets one more sentence of opinion ``s``).
    """
    s = 1 if rng.random() < 0.5 else -1
    n_opinions = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
    pols = [s if rng.random() < consistency else -s for _ in range(n_opinions)]
    if sum(pols) == 0:
        pols.append(s)
    body = [sentence(rng, p) for p in pols]
    if rng.random() < 0.4:
        body.insert(int(rng.integers(len(body) + 1)), sentence(rng, 0))
    if rng.random() < 0.4:
        body.insert(0, sentence(rng, 0))
    return " ".join(body), int(sum(pols) > 0)


def generate_reviews(n: int, seed: int | Sequence[int]) -> tuple[list[str], np.ndarray]:
    """``n`` reviews and their labels, deterministic in ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    pairs = [generate_review(rng) for _ in range(n)]
    return [t for t, _ in pairs], np.array([y for _, y in pairs], dtype=np.int64)


_SPLIT = re.compile(r"(?<=[.!])\s+")


@dataclass(frozen=True)
class Parse:
    """Result of :func:`parse_review`: ``ok`` when every sentence is in the language."""

    ok: bool
    score: int
    n_sentences: int

    @property
    def label(self) -> int | None:
        """1 positive, 0 negative, None when unparsable or without a net opinion."""
        if not self.ok or self.score == 0:
            return None
        return int(self.score > 0)


def parse_sentence(text: str) -> int | None:
    """Polarity of one sentence, or None when no template matches it."""
    for template in TEMPLATES:
        m = _compiled(template.pattern).fullmatch(text)
        if m is not None:
            return _polarity(template, m.groupdict())
    return None


def parse_review(text: str) -> Parse:
    """Parse a review into sentences; ``ok`` iff all of them are sentences of the grammar."""
    sentences = [s for s in _SPLIT.split(text.strip()) if s]
    score, ok = 0, bool(sentences)
    for s in sentences:
        pol = parse_sentence(s)
        if pol is None:
            ok = False
            continue
        score += pol
    return Parse(ok=ok, score=score, n_sentences=len(sentences))


def vocabulary() -> set[str]:
    """Distinct words of the language (case-sensitive, punctuation stripped)."""
    words: set[str] = set()
    for values in SLOTS.values():
        for v in values:
            words.update(re.findall(r"[A-Za-z']+", v))
    for t in TEMPLATES:
        words.update(re.findall(r"[A-Za-z']+", _SLOT.sub(" ", t.pattern)))
    return words

"""The toy-tldr corpus: Reddit-style advice posts, their key facts, and summaries of graded quality.

Each post belongs to a topic (a subreddit) and tells who the poster is (age and sex, as in
"24F"), who the post is about (``person``), for how long (``duration``), what happened
(``issue``) and when, and what the poster asks (``ask``), among filler sentences. Three of these
are the key facts a summary should state: the issue, the person and the ask.

Summaries are written by a small grammar with many free choices (an opener, which facts to
state, how to phrase and order them, an aside, how to end, whether to ramble on with sentences
copied from the post, whether to invent a detail), so two summaries of one post rarely share
their text, as with a real summariser. Their quality is graded: :func:`judge` reads any text (a
grammar summary or a model's sample) and :func:`preference_score` turns the reading into the
hidden "human" judgement the reward model learns from preference pairs:

    coverage (weighted key facts stated) - 2 x (invented details)
    - 0.1 x (words beyond 20: brevity) - 4 (no EOS: a summary that never ends)

An invented detail is something the post does not say: a claim no post makes ("and they lied
to me about it"), or a person, issue or ask of another post.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Topic:
    subreddit: str
    intro: str
    people: tuple[str, ...]
    issues: tuple[str, ...]
    asks: tuple[str, ...]
    context: tuple[str, ...]
    vague: str


def _t(*items: str) -> tuple[str, ...]:
    return tuple(items)


TOPICS: tuple[Topic, ...] = (
    Topic(
        "relationships",
        "I ({age}{sex}) have been with my {person} for {duration}.",
        _t("boyfriend", "girlfriend", "husband", "wife", "fiance", "partner"),
        _t(
            "forgot my birthday",
            "reads my private messages",
            "wants to move across the country",
            "spends every weekend gaming",
            "lied about a big debt",
            "never helps with the chores",
            "invited an ex to our wedding",
            "booked a trip without asking me",
        ),
        _t("should I break up", "how do I bring it up", "am I overreacting", "is this a red flag"),
        _t(
            "We live together in a small apartment.",
            "We met in college.",
            "Things were great until recently.",
            "We both work long hours.",
            "Our families get along well.",
        ),
        "relationship trouble, need advice",
    ),
    Topic(
        "jobs",
        "I ({age}{sex}) have worked for my {person} for {duration}.",
        _t("boss", "manager", "supervisor", "team lead", "company", "employer"),
        _t(
            "took credit for my project",
            "cut my hours in half",
            "yelled at me in a meeting",
            "denied my raise again",
            "wants me to work every weekend",
            "hired someone to replace me",
            "refused my vacation request",
        ),
        _t("should I quit", "how do I ask for a raise", "should I report it to HR", "is this normal"),
        _t(
            "I work in a small marketing office.",
            "The pay is decent but the hours are long.",
            "I have always had good reviews.",
            "Most of my coworkers are friendly.",
        ),
        "work drama, need advice",
    ),
    Topic(
        "personalfinance",
        "I ({age}{sex}) have been with my {person} for {duration}.",
        _t("landlord", "bank", "credit union", "car dealer", "insurance company", "phone company"),
        _t(
            "kept my whole security deposit",
            "raised the rent by thirty percent",
            "charged me a late fee twice",
            "closed my account without warning",
            "sold my debt to a collector",
            "doubled my monthly payment",
        ),
        _t("is this legal", "how do I get my money back", "should I file a complaint", "what are my options"),
        _t(
            "I have about five thousand dollars in savings.",
            "I always pay my bills on time.",
            "My credit score is around seven hundred.",
            "I make about forty thousand a year.",
        ),
        "money problems, need help",
    ),
    Topic(
        "dogs",
        "I ({age}{sex}) have had my {person} for {duration}.",
        _t("dog", "puppy", "rescue dog", "husky", "beagle", "old lab"),
        _t(
            "barks all night long",
            "chewed through my couch",
            "stopped eating dinner",
            "bit my neighbor",
            "pulls hard on every walk",
            "hides under the bed",
            "escaped from the yard twice",
        ),
        _t("should I see a vet", "how do I fix this", "is this normal", "should I hire a trainer"),
        _t(
            "We live in a quiet neighborhood.",
            "We go for two walks every day.",
            "Nothing in our routine has changed.",
            "I work from home most days.",
        ),
        "dog problems, any tips",
    ),
    Topic(
        "cats",
        "I ({age}{sex}) have had my {person} for {duration}.",
        _t("cat", "kitten", "old cat", "tabby", "rescue cat"),
        _t(
            "stopped using the litter box",
            "scratches all the furniture",
            "wakes me up at four",
            "attacks my feet at night",
            "threw up three times today",
            "hates my new roommate",
        ),
        _t("should I see a vet", "how do I stop this", "is this normal", "what am I doing wrong"),
        _t(
            "I live alone in a studio.",
            "I feed wet food twice a day.",
            "The vet said everything was fine at the checkup.",
            "I recently moved to a new place.",
        ),
        "cat problems, please help",
    ),
    Topic(
        "college",
        "I ({age}{sex}) have known my {person} for {duration}.",
        _t("roommate", "professor", "lab partner", "advisor", "teaching assistant"),
        _t(
            "failed me on the final exam",
            "never cleans the kitchen",
            "copied my lab report",
            "plays loud music every night",
            "ignored all my emails",
            "reported me for cheating",
        ),
        _t("should I talk to the dean", "should I switch rooms", "how do I handle this", "can I appeal"),
        _t(
            "I am a junior studying biology.",
            "My grades have been good so far.",
            "The semester ends soon.",
            "I live in a dorm on campus.",
        ),
        "college stress, need advice",
    ),
    Topic(
        "legaladvice",
        "I ({age}{sex}) have dealt with my {person} for {duration}.",
        _t("neighbor", "contractor", "former employer", "homeowners association", "mechanic"),
        _t(
            "cut down my oak tree",
            "parked on my lawn again",
            "never finished my roof",
            "kept my final paycheck",
            "built a fence on my property",
            "damaged my car and denied it",
        ),
        _t("can I sue", "do I need a lawyer", "what are my rights", "should I call the police"),
        _t(
            "I own a small house in the suburbs.",
            "I have photos of everything.",
            "I live in Ohio.",
            "We signed a written contract.",
        ),
        "legal trouble, what now",
    ),
    Topic(
        "fitness",
        "I ({age}{sex}) have trained with my {person} for {duration}.",
        _t("trainer", "gym buddy", "coach", "physical therapist", "running partner"),
        _t(
            "pushes me to lift too heavy",
            "cancels half our sessions",
            "made fun of my form",
            "wants me to cut carbs completely",
            "charges me for missed sessions",
        ),
        _t("should I find someone new", "how do I say no", "is this normal", "am I wrong"),
        _t(
            "I lift four days a week.",
            "I have lost ten pounds so far.",
            "My goal is to run a marathon.",
            "I started lifting at the gym recently.",
        ),
        "gym issues, need advice",
    ),
)  # fmt: skip

WHEN = (
    "last week",
    "yesterday",
    "a few days ago",
    "two weeks ago",
    "this morning",
    "last night",
    "over the weekend",
    "last month",
)
FEELING = (
    "I am not sure how to feel.",
    "I feel really hurt.",
    "I am so frustrated right now.",
    "My friends say I am overreacting.",
    "I have not slept well since.",
    "I tried to talk about it but it went nowhere.",
)
# Sentences a rambling summary adds that are in no post: padding, not facts.
RAMBLE = (
    "I do not know what to do.",
    "It has been really hard.",
    "Everyone I asked says something different.",
    "I have been thinking about this all week.",
    "This is my first post here.",
    "Sorry for the long post.",
)
# Claims no post makes: stating one is inventing a detail.
INVENTED = (
    "and they lied to me about it",
    "and now they want money from me",
    "and the police got involved",
    "and it happened in front of my family",
    "and they blamed me for it",
    "and it was all over social media",
)
UNITS = ("months", "years")

# The hidden judgement: how much each key fact is worth, what an invented detail and a long or
# unfinished summary cost.
FACTS = ("issue", "person", "ask")
FACT_WEIGHT = {"issue": 1.5, "person": 1.0, "ask": 1.0}
WRONG_COST = 2.0
FREE_WORDS = 20
WORD_COST = 0.1
NO_EOS_COST = 4.0


@dataclass(frozen=True)
class Post:
    """One post: its topic index, key facts and filler sentences."""

    topic: int
    person: str
    duration: str
    issue: str
    ask: str
    age: int
    sex: str
    when: str
    context: tuple[str, ...]
    feeling: str
    title_kind: int

    @property
    def subreddit(self) -> str:
        return TOPICS[self.topic].subreddit

    def prompt(self) -> str:
        """The post in the TL;DR dataset's prompt format, ending with ``TL;DR:``."""
        t = TOPICS[self.topic]
        ask = _upper_first(self.ask)
        titles = (
            f"My {self.person} {self.issue}",
            f"{ask}? My {self.person} {self.issue}",
            f"Need advice about my {self.person}",
            f"{ask}?",
        )
        intro = t.intro.format(
            age=self.age, sex=self.sex, person=self.person, duration=self.duration
        )
        body = " ".join(
            [intro, *self.context, f"{_upper_first(self.when)}, my {self.person} {self.issue}."]
            + [self.feeling, f"{ask}?"]
        )
        return (
            f"SUBREDDIT: r/{self.subreddit}\nTITLE: {titles[self.title_kind]}\nPOST: {body}\nTL;DR:"
        )


def _upper_first(s: str) -> str:
    return s[0].upper() + s[1:]


def _lower_first(sentence: str) -> str:
    return sentence if sentence.startswith("I ") else sentence[0].lower() + sentence[1:]


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def generate_post(rng: np.random.Generator, topic: int | None = None) -> Post:
    """One random post (of a random topic unless ``topic`` is given)."""
    topic = int(rng.integers(len(TOPICS))) if topic is None else topic
    t = TOPICS[topic]
    n_ctx = 1 if rng.random() < 0.6 else 2
    ctx = tuple(t.context[i] for i in sorted(rng.choice(len(t.context), n_ctx, replace=False)))
    return Post(
        topic=topic,
        person=_pick(rng, t.people),
        duration=f"{int(rng.integers(2, 12))} {_pick(rng, UNITS)}",
        issue=_pick(rng, t.issues),
        ask=_pick(rng, t.asks),
        age=int(rng.integers(18, 60)),
        sex="F" if rng.random() < 0.5 else "M",
        when=_pick(rng, WHEN),
        context=ctx,
        feeling=_pick(rng, FEELING),
        title_kind=int(rng.integers(4)),
    )


def generate_posts(n: int, seed: int | Sequence[int]) -> list[Post]:
    """``n`` posts, deterministic in ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    return [generate_post(rng) for _ in range(n)]


# -- reading a summary -----------------------------------------------------------------------
@dataclass(frozen=True)
class Judgement:
    """What a summary states about its post: key facts stated, details invented, its length."""

    correct: frozenset[str]
    wrong: int
    words: int

    @property
    def coverage(self) -> float:
        """Weighted share of the key facts stated, in [0, 1]."""
        return sum(FACT_WEIGHT[f] for f in self.correct) / sum(FACT_WEIGHT.values())


def _mentions(text: str, values: Sequence[str]) -> set[str]:
    """The values stated in ``text`` (lower case, whole words); a value inside a longer stated
    value (``dog`` in ``rescue dog``) does not count on its own."""
    found = {v for v in values if re.search(rf"\b{re.escape(v.lower())}\b", text)}
    return {v for v in found if not any(v != w and v.lower() in w.lower() for w in found)}


_PLURAL = {"person": "people", "issue": "issues", "ask": "asks"}
# Every value of every key fact, longest first, as one pattern: the left-most longest match at
# each place is the value stated there ("rescue dog", not "dog").
_ANY_VALUE = re.compile(
    r"\b("
    + "|".join(
        re.escape(v.lower())
        for v in sorted(
            {v for t in TOPICS for f in FACTS for v in getattr(t, _PLURAL[f])},
            key=lambda v: (-len(v), v),
        )
    )
    + r")\b"
)


def judge(post: Post, text: str) -> Judgement:
    """Read ``text`` as a summary of ``post``: which key facts it states, and how many details
    it invents (a claim no post makes; a person, issue or ask the post does not have)."""
    low = text.lower()
    correct = {f for f in FACTS if _mentions(low, [getattr(post, f)])}
    # What the post itself says is no invention, even when it contains another post's value
    # ("bit my neighbor" names a person of r/legaladvice), nor is its subreddit's topic.
    own = [*post.context, post.feeling, TOPICS[post.topic].vague]
    for said in [getattr(post, f) for f in correct] + own:
        low = low.replace(said.lower().rstrip("."), " | ")
    wrong = sum(claim in low for claim in INVENTED) + len(set(_ANY_VALUE.findall(low)))
    return Judgement(frozenset(correct), wrong, len(text.split()))


def preference_score(
    summary: Summary | str, ends_with_eos: bool, post: Post | None = None
) -> float:
    """The hidden judgement behind the preference pairs (higher is better): weighted facts,
    minus invented details, minus words beyond ``FREE_WORDS``, minus a summary that never ends.
    A plain text needs its ``post``."""
    if isinstance(summary, str):
        if post is None:
            raise ValueError("post: a summary given as text needs its post to be judged")
        j = judge(post, summary)
    else:
        j = summary.judgement
    return (
        sum(FACT_WEIGHT[f] for f in j.correct)
        - WRONG_COST * j.wrong
        - WORD_COST * max(0, j.words - FREE_WORDS)
        - (NO_EOS_COST if not ends_with_eos else 0.0)
    )


# -- writing a summary -----------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """A summary's text (leading space, no EOS) and what it states about its post."""

    text: str
    kind: str
    judgement: Judgement = field(compare=False)

    @property
    def correct(self) -> int:
        return len(self.judgement.correct)

    @property
    def wrong(self) -> int:
        return self.judgement.wrong


@dataclass(frozen=True)
class Style:
    """How a writer of summaries chooses: the chance to state each key fact, to add a short
    aside, to ramble on with sentences from the post, to invent a detail, to write a vague line."""

    include: dict[str, float]
    aside: float
    ramble: float
    wrong: float
    vague: float


# The SFT data's writer: mostly decent summaries that leave out a fact now and then, some
# rambling (long enough to run past the token budget now and then), a few with an invented
# detail. The RM's pairs come from a writer that spreads quality wider, so that every part of
# the judgement is seen often.
SFT_STYLE = Style(
    include={"issue": 0.9, "person": 0.9, "ask": 0.6}, aside=0.3, ramble=0.3, wrong=0.1, vague=0.04
)
PAIR_STYLE = Style(
    include={"issue": 0.6, "person": 0.6, "ask": 0.5}, aside=0.3, ramble=0.3, wrong=0.3, vague=0.1
)

OPENERS = ("", "", "", "so ", "basically ", "long story short, ", "ok so ", "in short, ", "tl;dr ")
SUBJECTS = ("my {p}", "my {p}", "my {p}", "the {p}", "our {p}")
ASK_FORMS = ("{sep}{ask}?", "{sep}{ask}?", " and I am wondering {ask}.", " so {ask}?")
SEPS = (", ", ". ", " - ", "... ")
ENDINGS = (".", ".", "!", ". any advice?", ". what do I do?", ". help?", "...")
VAGUE_SUBJECT = ("they", "this person", "someone close to me")
VAGUE_ISSUE = ("did something bad", "is being difficult", "crossed a line", "keeps doing this")


def _wrong_value(post: Post, fact: str, rng: np.random.Generator) -> str:
    """A value of ``fact`` from a post of another topic (an invented detail)."""
    others = [t for i, t in enumerate(TOPICS) if i != post.topic]
    topic = others[int(rng.integers(len(others)))]
    truth = getattr(post, fact)
    choices = [v for v in getattr(topic, _PLURAL[fact]) if v not in truth and truth not in v]
    return _pick(rng, choices)


def write_summary(post: Post, rng: np.random.Generator, style: Style = SFT_STYLE) -> Summary:
    """One summary of ``post`` written with ``style``'s choices (see the module docstring)."""
    if rng.random() < style.vague:
        text = " " + TOPICS[post.topic].vague + _pick(rng, (".", "!", "?"))
        return Summary(text, "vague", judge(post, text))
    facts = {f for f in FACTS if rng.random() < style.include[f]}
    values = {f: getattr(post, f) for f in FACTS}
    kind = "facts"
    invented = ""
    if rng.random() < style.wrong:
        kind = "wrong"
        if facts and rng.random() < 0.5:
            bad = _pick(rng, sorted(facts))
            values[bad] = _wrong_value(post, bad, rng)
        else:
            invented = " " + _pick(rng, INVENTED)
    if "person" in facts:
        subject = _pick(rng, SUBJECTS).format(p=values["person"])
    else:
        subject = _pick(rng, VAGUE_SUBJECT)
    event = f"{subject} {values['issue'] if 'issue' in facts else _pick(rng, VAGUE_ISSUE)}"
    event += invented
    if rng.random() < style.aside:
        event += ", " + _lower_first(_pick(rng, (post.feeling, *post.context)))[:-1]
    if "ask" in facts:
        if rng.random() < 0.3:
            main = f"{_upper_first(values['ask'])}? {_upper_first(event)}."
        else:
            main = event + _pick(rng, ASK_FORMS).format(sep=_pick(rng, SEPS), ask=values["ask"])
    else:
        main = event + _pick(rng, ENDINGS)
    opener = _pick(rng, OPENERS)
    text = opener + (_lower_first(main) if opener else main)
    if rng.random() < style.ramble:
        kind = "ramble" if kind == "facts" else kind
        pool = [_lower_first(c) for c in post.context] + [_lower_first(post.feeling)]
        pool += [_lower_first(r) for r in RAMBLE]
        extra = [pool[i] for i in rng.permutation(len(pool))[: int(rng.integers(2, 8))]]
        before = int(rng.integers(len(extra) + 1))
        text = " ".join([*extra[:before], text, *extra[before:]])
    text = " " + text.strip()
    return Summary(text, kind, judge(post, text))


def best_summary(post: Post) -> Summary:
    """A summary that states every key fact and nothing invented, within ``FREE_WORDS`` words
    (the top of the judgement)."""
    text = f" my {post.person} {post.issue}, {post.ask}?"
    return Summary(text, "best", judge(post, text))


def summarize(post: Post, kind: str, rng: np.random.Generator) -> Summary:
    """A summary of a named kind: ``"best"`` (every key fact, brief), ``"sft"`` (the SFT
    writer), ``"pair"`` (the preference-pair writer), ``"vague"`` (no fact) or ``"wrong"``
    (the best summary with a person of another post)."""
    if kind == "best":
        return best_summary(post)
    if kind == "sft":
        return write_summary(post, rng, SFT_STYLE)
    if kind == "pair":
        return write_summary(post, rng, PAIR_STYLE)
    if kind == "vague":
        text = " " + TOPICS[post.topic].vague + "."
        return Summary(text, kind, judge(post, text))
    if kind == "wrong":
        return corrupt(post, best_summary(post), rng, fact="person")
    raise ValueError(f"kind must be one of best, sft, pair, vague, wrong; got {kind!r}")


def corrupt(
    post: Post, summary: Summary, rng: np.random.Generator, fact: str | None = None
) -> Summary:
    """``summary`` with one stated key fact (``fact``, or a random one) replaced by that of a
    post of another topic, or with a claim no post makes added when it states none: a minimal
    pair for faithfulness."""
    facts = sorted(summary.judgement.correct)
    if fact is None and facts:
        fact = _pick(rng, facts)
    if fact is None:
        text = summary.text.rstrip(".!?") + " " + _pick(rng, INVENTED) + "."
    else:
        text = summary.text.replace(getattr(post, fact), _wrong_value(post, fact, rng), 1)
    return Summary(text, "wrong", judge(post, text))


def sft_summaries(posts: list[Post], seed: int | Sequence[int]) -> list[Summary]:
    """One reference summary per post, from the SFT writer."""
    rng = np.random.default_rng(seed)
    return [write_summary(p, rng, SFT_STYLE) for p in posts]


@dataclass(frozen=True)
class Pair:
    """A preference pair: the chosen and the rejected summary (and whether each ends with EOS)."""

    post: Post
    chosen: Summary
    rejected: Summary
    chosen_eos: bool
    rejected_eos: bool


def truncate_words(summary: Summary, post: Post, rng: np.random.Generator) -> Summary:
    """The summary cut mid-way, standing for a generation that ran out of tokens before EOS."""
    words = summary.text.split()
    keep = max(1, int(rng.integers(max(2, len(words) // 2), len(words) + 1)))
    text = " " + " ".join(words[:keep])
    return Summary(text, summary.kind, judge(post, text))


def _unfinished(rng: np.random.Generator) -> bool:
    # One in eight summaries never ends: the reward model must learn that EOS matters.
    return bool(rng.random() < 1 / 8)


def preference_pairs(
    posts: list[Post], seed: int | Sequence[int], min_gap: float = 1.0
) -> list[Pair]:
    """One pair per post whose two summaries differ by at least ``min_gap`` in preference score."""
    rng = np.random.default_rng(seed)
    pairs = []
    for p in posts:
        while True:
            a, b = write_summary(p, rng, PAIR_STYLE), write_summary(p, rng, PAIR_STYLE)
            ea, eb = not _unfinished(rng), not _unfinished(rng)
            a = a if ea else truncate_words(a, p, rng)
            b = b if eb else truncate_words(b, p, rng)
            sa, sb = preference_score(a, ea), preference_score(b, eb)
            if abs(sa - sb) >= min_gap:
                break
        pairs.append(Pair(p, a, b, ea, eb) if sa > sb else Pair(p, b, a, eb, ea))
    return pairs


@dataclass(frozen=True)
class Group:
    """Several summaries of one post, ranked by the hidden judgement (InstructGPT-style data:
    a group of k summaries yields up to k(k-1)/2 preference pairs for one pass over the post)."""

    post: Post
    summaries: tuple[Summary, ...]
    eos: tuple[bool, ...]

    @property
    def scores(self) -> tuple[float, ...]:
        return tuple(preference_score(s, e) for s, e in zip(self.summaries, self.eos, strict=True))

    def pairs(self, min_gap: float = 0.5) -> list[tuple[int, int]]:
        """``(better, worse)`` index pairs whose scores differ by at least ``min_gap``."""
        sc = self.scores
        return [(i, j) for i in range(len(sc)) for j in range(len(sc)) if sc[i] - sc[j] >= min_gap]


def preference_groups(posts: list[Post], seed: int | Sequence[int], k: int = 6) -> list[Group]:
    """One group of ``k`` summaries per post from the pair writer, one in eight unfinished.
    One time in four the best summary replaces the first, so that the top of the scale is
    learnt too; one time in two the last is a copy of the first with a detail invented, a
    minimal pair that only faithfulness to the post tells apart."""
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    rng = np.random.default_rng(seed)
    groups = []
    for p in posts:
        sums = [write_summary(p, rng, PAIR_STYLE) for _ in range(k)]
        if rng.random() < 0.25:
            sums[0] = best_summary(p)
        if rng.random() < 0.5:
            sums[-1] = corrupt(p, sums[0], rng)
        ends = tuple(not _unfinished(rng) for _ in sums)
        sums = [s if e else truncate_words(s, p, rng) for s, e in zip(sums, ends, strict=True)]
        groups.append(Group(p, tuple(sums), ends))
    return groups

"""The toy-tldr corpus: Reddit-style advice posts, their key facts, and summaries of graded quality.

Each post belongs to a topic (a subreddit) and states four key facts: who (``person``), for how long
(``duration``), what happened (``issue``) and what the poster asks (``ask``). Summaries come in
kinds that mention more or fewer of the facts, facts of another post (a hallucination), or ramble;
:func:`preference_score` is the hidden "human" judgement that the reward model learns from pairs:
more correct facts is better, wrong facts and length are worse, and a summary that never ends
(no EOS) is worst.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
        _t(
            "should I quit",
            "how do I ask for a raise",
            "should I report it to HR",
            "is this normal",
        ),
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
        _t(
            "is this legal",
            "how do I get my money back",
            "should I file a complaint",
            "what are my options",
        ),
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
            "The vet said last year that everything was fine.",
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
        _t(
            "should I talk to the dean",
            "should I switch rooms",
            "how do I handle this",
            "can I appeal",
        ),
        _t(
            "I am a junior studying biology.",
            "My grades have been good so far.",
            "The semester ends in a month.",
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
            "I started lifting last year.",
        ),
        "gym issues, need advice",
    ),
)

WHEN = ("Last week", "Yesterday", "A few days ago", "Two weeks ago", "This morning", "Last night")
FEELING = (
    "I am not sure how to feel.",
    "I feel really hurt.",
    "I am so frustrated right now.",
    "My friends say I am overreacting.",
    "I have not slept well since.",
    "I tried to talk about it but it went nowhere.",
)
UNITS = ("months", "years")

# Summary kinds, from best to worst, and the mixture the SFT data is drawn from: mostly decent
# summaries, some worse, so that the SFT policy's samples vary in quality and alignment has room.
KINDS = ("full", "no_duration", "short", "ask_only", "vague", "wrong", "verbose")
SFT_MIX = (0.45, 0.2, 0.15, 0.05, 0.05, 0.05, 0.05)
# How often each kind is drawn into a held-out preference pair (and into a group smaller than
# all kinds); hallucinations are rare, as in the SFT data.
PAIR_MIX = (0.2, 0.15, 0.15, 0.15, 0.15, 0.05, 0.15)
FACTS = ("person", "duration", "issue", "ask")


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
    context: tuple[str, ...]
    title_kind: int

    @property
    def subreddit(self) -> str:
        return TOPICS[self.topic].subreddit

    def prompt(self) -> str:
        """The post in the TL;DR dataset's prompt format, ending with ``TL;DR:``."""
        t = TOPICS[self.topic]
        titles = (
            f"My {self.person} {self.issue}",
            f"{self.ask[0].upper()}{self.ask[1:]}? My {self.person} {self.issue}",
            f"Need advice about my {self.person}",
        )
        intro = t.intro.format(
            age=self.age, sex=self.sex, person=self.person, duration=self.duration
        )
        when = WHEN[(self.age + len(self.issue)) % len(WHEN)]
        feeling = FEELING[(self.age * 7 + len(self.person)) % len(FEELING)]
        body = " ".join(
            [intro, *self.context, f"{when}, my {self.person} {self.issue}.", feeling]
            + [f"{self.ask[0].upper()}{self.ask[1:]}?"]
        )
        return (
            f"SUBREDDIT: r/{self.subreddit}\nTITLE: {titles[self.title_kind]}\nPOST: {body}\nTL;DR:"
        )


@dataclass(frozen=True)
class Summary:
    """A summary's text (leading space, no EOS) and what it states."""

    text: str
    kind: str
    correct: int
    wrong: int


def generate_post(rng: np.random.Generator, topic: int | None = None) -> Post:
    """One random post (of a random topic unless ``topic`` is given)."""
    topic = int(rng.integers(len(TOPICS))) if topic is None else topic
    t = TOPICS[topic]
    n_ctx = 1 if rng.random() < 0.7 else 2
    ctx = tuple(t.context[i] for i in sorted(rng.choice(len(t.context), n_ctx, replace=False)))
    return Post(
        topic=topic,
        person=t.people[int(rng.integers(len(t.people)))],
        duration=f"{int(rng.integers(2, 12))} {UNITS[int(rng.integers(2))]}",
        issue=t.issues[int(rng.integers(len(t.issues)))],
        ask=t.asks[int(rng.integers(len(t.asks)))],
        age=int(rng.integers(18, 60)),
        sex="F" if rng.random() < 0.5 else "M",
        context=ctx,
        title_kind=int(rng.integers(3)),
    )


def summarize(post: Post, kind: str, rng: np.random.Generator) -> Summary:
    """A summary of ``post`` of the given kind (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    p = post
    if kind == "wrong":
        # A fluent summary of a post of another topic: the hallucination case.
        topic = (p.topic + 1 + int(rng.integers(len(TOPICS) - 1))) % len(TOPICS)
        other = generate_post(rng, topic)
        s = summarize(other, "full", rng)
        correct = int(other.duration == p.duration) + int(other.ask == p.ask)
        return Summary(s.text, kind, correct, len(FACTS) - correct)
    if kind == "full":
        return Summary(f" my {p.person} of {p.duration} {p.issue}, {p.ask}?", kind, 4, 0)
    if kind == "no_duration":
        return Summary(f" my {p.person} {p.issue}, {p.ask}?", kind, 3, 0)
    if kind == "short":
        return Summary(f" my {p.person} {p.issue}.", kind, 2, 0)
    if kind == "ask_only":
        return Summary(f" {p.ask}?", kind, 1, 0)
    if kind == "vague":
        return Summary(f" {TOPICS[p.topic].vague}.", kind, 0, 0)
    # verbose: the right facts buried in sentences copied from the post.
    filler = " ".join(_lower_first(c) for c in p.context)
    feeling = _lower_first(FEELING[int(rng.integers(len(FEELING)))])
    text = f" so {filler} {feeling[:-1]} because my {p.person} of {p.duration} {p.issue}, {p.ask}?"
    return Summary(text, kind, 4, 0)


def _lower_first(sentence: str) -> str:
    return sentence if sentence.startswith("I ") else sentence[0].lower() + sentence[1:]


def preference_score(summary: Summary, ends_with_eos: bool) -> float:
    """The hidden judgement behind the preference pairs (higher is better)."""
    n_words = len(summary.text.split())
    return (
        summary.correct
        - 2.0 * summary.wrong
        - 0.15 * max(0, n_words - 22)
        - (4.0 if not ends_with_eos else 0.0)
    )


def generate_posts(n: int, seed: int | Sequence[int]) -> list[Post]:
    """``n`` posts, deterministic in ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    return [generate_post(rng) for _ in range(n)]


def sft_summaries(posts: list[Post], seed: int | Sequence[int]) -> list[Summary]:
    """One reference summary per post, drawn from the SFT mixture of kinds."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(KINDS), size=len(posts), p=SFT_MIX)
    return [summarize(p, KINDS[k], rng) for p, k in zip(posts, kinds, strict=True)]


@dataclass(frozen=True)
class Pair:
    """A preference pair: the chosen and the rejected summary (and whether each ends with EOS)."""

    post: Post
    chosen: Summary
    rejected: Summary
    chosen_eos: bool
    rejected_eos: bool


def truncate_words(summary: Summary, rng: np.random.Generator) -> Summary:
    """The summary cut mid-way, standing for a generation that ran out of tokens before EOS."""
    words = summary.text.split()
    keep = max(1, int(rng.integers(max(2, len(words) // 2), len(words) + 1)))
    return Summary(" " + " ".join(words[:keep]), summary.kind, summary.correct, summary.wrong)


def preference_pairs(
    posts: list[Post], seed: int | Sequence[int], min_gap: float = 1.0
) -> list[Pair]:
    """One pair per post whose two summaries differ by at least ``min_gap`` in preference score."""
    rng = np.random.default_rng(seed)
    pairs = []
    for p in posts:
        while True:
            a, b = (
                summarize(p, KINDS[k], rng) for k in rng.choice(len(KINDS), size=2, replace=False)
            )
            # One in eight summaries never ends: the reward model must learn that EOS matters.
            ea, eb = bool(rng.random() > 1 / 8), bool(rng.random() > 1 / 8)
            a = a if ea else truncate_words(a, rng)
            b = b if eb else truncate_words(b, rng)
            sa, sb = preference_score(a, ea), preference_score(b, eb)
            if abs(sa - sb) >= min_gap:
                break
        if sa > sb:
            pairs.append(Pair(p, a, b, ea, eb))
        else:
            pairs.append(Pair(p, b, a, eb, ea))
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

    def pairs(self, min_gap: float = 1.0) -> list[tuple[int, int]]:
        """``(better, worse)`` index pairs whose scores differ by at least ``min_gap``."""
        sc = self.scores
        return [(i, j) for i in range(len(sc)) for j in range(len(sc)) if sc[i] - sc[j] >= min_gap]


def preference_groups(
    posts: list[Post], seed: int | Sequence[int], k: int = len(KINDS)
) -> list[Group]:
    """One group of ``k`` summaries of distinct kinds per post, in random order (kinds drawn from
    the pair mixture; by default every kind)."""
    if not 2 <= k <= len(KINDS):
        raise ValueError(f"k must be in [2, {len(KINDS)}], got {k}")
    rng = np.random.default_rng(seed)
    groups = []
    for p in posts:
        kinds = rng.choice(len(KINDS), size=k, replace=False, p=PAIR_MIX)
        ends = tuple(bool(rng.random() > 1 / 8) for _ in kinds)
        sums = tuple(
            s if e else truncate_words(s, rng)
            for s, e in zip((summarize(p, KINDS[i], rng) for i in kinds), ends, strict=True)
        )
        groups.append(Group(p, sums, ends))
    return groups

"""Generated preference data with rules a small model can learn: the demo's dataset.

Each prompt asks about one topic. The chosen answer is polite, on topic and complete. The rejected answer
has exactly one flaw, drawn at random: it talks about another topic (only the prompt tells it apart),
it is rude, it refuses, or it rambles with repeated words. Seeded, so every run sees the same pairs.
"""

from __future__ import annotations

import random

from rewardlab.data.records import PreferencePair

TOPICS = {
    "tea": ["Green tea is steeped in water below boiling.", "Black tea is fully oxidised before drying."],
    "bicycles": ["A chain that is oiled shifts smoothly.", "Tyre pressure is written on the side of the tyre."],
    "volcanoes": ["Lava is molten rock that reached the surface.", "Many volcanoes sit where plates meet."],
    "bread": ["Yeast makes the dough rise.", "Bread bakes best in a hot oven."],
    "chess": ["The bishop moves along diagonals.", "Castling moves the king two squares."],
    "rivers": ["A river flows from its source to its mouth.", "Rivers carry sand down to the sea."],
    "guitars": ["A guitar usually has six strings.", "Frets divide the neck into half steps."],
    "planets": ["Mars is often called the red planet.", "Jupiter is the largest planet."],
    "gardening": ["Tomatoes need plenty of sun.", "Water plants early in the morning."],
    "python": ["A list keeps its items in order.", "Functions are defined with def."],
    "whales": ["Whales breathe air through a blowhole.", "The blue whale is the largest animal."],
    "coffee": ["Espresso is brewed under pressure.", "Fresh beans give the best flavour."],
}
ASKS = [
    "Tell me about {t}.",
    "What should I know about {t}?",
    "Can you explain {t} to me?",
    "I have a question about {t}.",
]
OPENERS = ["Sure!", "Happy to help.", "Good question.", "Of course."]
CLOSERS = ["I hope this helps.", "Let me know if you want more.", "Enjoy learning about {t}."]
RUDE = ["Figure it out yourself.", "That is a stupid question.", "Stop bothering me with this."]
REFUSALS = ["I cannot help with that.", "I do not know anything.", "No comment."]


def _good(rng: random.Random, topic: str) -> str:
    fact = rng.choice(TOPICS[topic])
    return f"{rng.choice(OPENERS)} {fact} {rng.choice(CLOSERS).format(t=topic)}"


def _bad(rng: random.Random, topic: str) -> tuple[str, str]:
    flaw = rng.choice(["off_topic", "rude", "refusal", "rambling"])
    if flaw == "off_topic":
        other = rng.choice([t for t in TOPICS if t != topic])
        return flaw, _good(rng, other)
    if flaw == "rude":
        return flaw, f"{rng.choice(RUDE)} {rng.choice(TOPICS[topic])}"
    if flaw == "refusal":
        return flaw, rng.choice(REFUSALS)
    word = rng.choice(TOPICS[topic][0].split())
    return flaw, " ".join([word] * rng.randint(6, 12))


def make_pairs(n: int, seed: int) -> list[PreferencePair]:
    """``n`` pairs; ``subset`` names the rejected answer's flaw (for per-flaw accuracy)."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        topic = rng.choice(list(TOPICS))
        flaw, rejected = _bad(rng, topic)
        prompt = rng.choice(ASKS).format(t=topic)
        pairs.append(PreferencePair(prompt, _good(rng, topic), rejected, id=f"synthetic-{seed}-{i}", subset=flaw))
    return pairs


def corpus(pairs: list[PreferencePair]) -> list[str]:
    """Texts to train a tiny tokenizer on."""
    return [t for p in pairs for t in (str(p.prompt), str(p.chosen), str(p.rejected))]

"""The plan of the synthetic world: topics, owners, and each image's topic, difficulty, labels and
raw tags (no pixels).

The world is built so that the paper's premise holds: an image's metadata neighbours tell you
about its labels, and looking at them helps most where the image alone is ambiguous.

- Topics. Each of `n_topics` latent topics has a theme (beach, kitchen, city at night, ...), a
  core set of 1-3 labels drawn from the labels that theme plausibly shows, and a tag pool of
  8-15 words: a few words for each core label plus theme words. Pools overlap (topics share
  labels and themes), so Jaccard neighbours usually, not always, come from the same topic.
- Labels. An image carries each core label of its topic with probability `LABEL_KEEP`; when
  none is drawn it carries the topic's first (primary) label, so a single-label topic's images
  always show that label and an n-label topic's primary label appears with probability
  LABEL_KEEP + (1 - LABEL_KEEP)^n (0.76 for two labels, 0.664 for three), the others with 0.6. Now and then one random
  extra label is added. The tags say which topic an image belongs to, not which
  of the topic's labels it shows, so metadata alone gives a topic prior (as on Flickr, where
  tags are loose); the pixels say which labels are there. `LABEL_KEEP` = 0.6 keeps that prior
  uncertain enough that a metadata-only model (Meta+Logistic) does not solve the task.
  `NO_LABEL_FRACTION` of images have none (background only). `baby` is rare (2-3 images) and `lake` has an annotation file but no images.
- Tags. 4-9 raw tags per image, mostly from its topic pool (frequent words first), the rest
  generic Flickr noise (camera models, "explore", "2008", owner ids like "john_smith123") and
  stop words. Words appear in inflected and case variants ("Dogs", "geese", "skies", "running")
  and some as several words ("Sea Side", "New York"), so the metadata needs real tokenising and
  lemmatising. `NO_TAGS_FRACTION` of images have no tags, `JUNK_ONLY_FRACTION` only noise tags.
- Difficulty. A `hard_fraction` of images, spread over all topics, are drawn hard (see `render`):
  the label is hard to read from that image alone, while its neighbours (same topic, mostly
  easy) show it clearly.

Everything is drawn from one numpy Generator seeded by `params.seed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.config import SyntheticParams
from pipeline.data.synthetic.vocabulary import (
    FIRST_NAMES, GENERIC_TAGS, JUNK_TAGS, LABEL_WORDS, LAST_NAMES, STOP_TAGS, THEMES, VISUAL_LABELS, choice, surface,
)

LABEL_KEEP = 0.6  # P(image carries a given core label of its topic)
EXTRA_LABEL_PROB = 0.15  # P(image carries one random extra label)
NO_LABEL_FRACTION = 0.03  # images with no label at all (background and distractors only)
NO_TAGS_FRACTION = 0.03  # images whose tag files are empty
JUNK_ONLY_FRACTION = 0.015  # images whose tags are only camera / Flickr / stop-word noise
N_BABY = (2, 3)  # the rare label: this many images (inclusive range)


@dataclass
class Topic:
    theme: str
    labels: tuple[str, ...]  # core labels
    pool: list[tuple[str, ...]]  # word groups, most frequent first


@dataclass
class ImagePlan:
    number: int  # 1-based, as in im{number}.jpg
    topic: int
    hard: bool
    labels: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # raw tags


@dataclass
class World:
    topics: list[Topic]
    images: list[ImagePlan]



def _make_topics(rng: np.random.Generator, n_topics: int) -> list[Topic]:
    """Primary labels cycle through the visual labels (so each is a core label somewhere); the
    theme is one that shows the primary label, and adds 0-2 of its other labels."""
    order = [str(lab) for lab in rng.permutation(VISUAL_LABELS)]
    topics = []
    for t in range(n_topics):
        primary = order[t % len(order)]
        themes = [name for name, (labels, _) in THEMES.items() if primary in labels]
        theme = choice(rng, themes)
        theme_labels, theme_words = THEMES[theme]
        others = [lab for lab in theme_labels if lab != primary]
        n_extra = min(len(others), int(rng.choice([0, 1, 2], p=[0.3, 0.45, 0.25])))
        labels = (primary, *(others[i] for i in rng.choice(len(others), n_extra, replace=False)))
        pool: list[tuple[str, ...]] = []
        for lab in labels:  # 2-4 words per core label
            words = LABEL_WORDS[lab]
            k = int(rng.integers(2, 5))
            pool += [words[0]] + [words[i] for i in 1 + rng.choice(len(words) - 1, k - 1, replace=False)]
        pool += [theme_words[i] for i in rng.choice(len(theme_words), int(rng.integers(3, 6)), replace=False)]
        unique = list(dict.fromkeys(pool))  # words can repeat between a label and a theme
        order_in_pool = rng.permutation(len(unique))
        unique = [unique[i] for i in order_in_pool]
        while len(unique) < 8:  # pad small pools with words of other themes: topics overlap
            other = THEMES[choice(rng, list(THEMES))][1]
            word = choice(rng, other)
            if word not in unique:
                unique.append(word)
        topics.append(Topic(theme=theme, labels=tuple(labels), pool=unique[:15]))
    return topics


def _image_tags(rng: np.random.Generator, topic: Topic, owners: list[str], all_words: list[tuple[str, ...]]) -> list[str]:
    """4-9 raw tags: mostly topic words (Zipf-weighted), plus generic noise, stop words, an owner id."""
    n_tags = int(rng.integers(4, 10))
    n_generic = int(rng.binomial(n_tags, 0.15))
    n_stray = int(rng.binomial(n_tags - n_generic, 0.1))
    n_topic = max(2, n_tags - n_generic - n_stray)
    weights = 1.0 / np.arange(1, len(topic.pool) + 1) ** 0.8
    picks = rng.choice(len(topic.pool), min(n_topic, len(topic.pool)), replace=False, p=weights / weights.sum())
    tags = [surface(rng, topic.pool[i]) for i in picks]
    if rng.random() < 0.15:  # the same word twice, in two forms ("dog", "Dogs")
        tags.append(surface(rng, topic.pool[picks[0]]))
    tags += [surface(rng, choice(rng, all_words)) for _ in range(n_stray)]
    tags += [choice(rng, GENERIC_TAGS) for _ in range(n_generic)]
    if rng.random() < 0.2:
        tags.append(choice(rng, STOP_TAGS))
    if rng.random() < 0.2:
        tags.append(choice(rng, owners))
    tags = list(dict.fromkeys(tags))  # no exact duplicate lines
    return [tags[i] for i in rng.permutation(len(tags))]


def _exact(rng: np.random.Generator, n: int, fraction: float, at_least: int = 0) -> np.ndarray:
    """A boolean mask with exactly round(fraction * n) (but at least `at_least`) True entries."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, min(n, max(at_least, round(fraction * n))), replace=False)] = True
    return mask


def plan_world(params: SyntheticParams) -> World:
    """Topics, and each image's topic, difficulty, labels and raw tags (no pixels): cheap and
    deterministic by `params.seed`. The special cases (no labels, no tags, only junk tags) are
    exact counts, at least one each, so that even a tiny world exercises them."""
    rng = np.random.default_rng([params.seed, 0])
    topics = _make_topics(rng, params.n_topics)
    n = params.n_images
    topic_of = rng.permutation(np.arange(n) % params.n_topics)  # balanced topic sizes
    hard = _exact(rng, n, params.hard_fraction)
    no_labels = _exact(rng, n, NO_LABEL_FRACTION, at_least=1)
    tag_kind = rng.permutation(n)  # first the images without tags, then those with junk only
    n_no_tags = max(1, round(NO_TAGS_FRACTION * n))
    n_junk = max(1, round(JUNK_ONLY_FRACTION * n))
    owners = [f"{choice(rng, FIRST_NAMES)}_{choice(rng, LAST_NAMES)}{int(rng.integers(1, 999))}" for _ in range(30)]
    all_words = [w for words in LABEL_WORDS.values() for w in words] + [w for _, ws in THEMES.values() for w in ws]
    images = [ImagePlan(number=i + 1, topic=int(topic_of[i]), hard=bool(hard[i])) for i in range(n)]
    for plan in images:
        topic = topics[plan.topic]
        if not no_labels[plan.number - 1]:
            labels = [lab for lab in topic.labels if rng.random() < LABEL_KEEP] or [topic.labels[0]]
            if rng.random() < EXTRA_LABEL_PROB:
                labels.append(choice(rng, VISUAL_LABELS))
            plan.labels = list(dict.fromkeys(labels))
        plan.tags = _image_tags(rng, topic, owners, all_words)
    for i in tag_kind[:n_no_tags]:
        images[i].tags = []
    for i in tag_kind[n_no_tags:n_no_tags + n_junk]:
        k = int(rng.integers(1, 4))
        images[i].tags = [JUNK_TAGS[j] for j in rng.choice(len(JUNK_TAGS), k, replace=False)]
    labelled = [p for p in images if p.labels]
    n_baby = int(rng.integers(N_BABY[0], N_BABY[1] + 1))
    for j in rng.choice(len(labelled), min(n_baby, len(labelled)), replace=False):
        plan = labelled[int(j)]
        plan.labels.append("baby")
        if plan.tags:  # an image without tags stays without
            plan.tags = list(dict.fromkeys([*plan.tags, *(surface(rng, w) for w in LABEL_WORDS["baby"][:2])]))
    return World(topics=topics, images=images)

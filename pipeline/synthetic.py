"""The embedded default dataset: a synthetic world written in the MIRFlickr-25k layout.

    <root>/mirflickr/im{N}.jpg                          N = 1 .. n_images, RGB JPEG
    <root>/mirflickr/meta/tags_raw/tags{N}.txt          raw tags, one per line (case, spaces kept)
    <root>/mirflickr/meta/tags/tags{N}.txt              cleaned tags: lower case, spaces removed
    <root>/mirflickr25k_annotations_v080/{label}.txt    1-based image numbers, one per line
    <root>/mirflickr25k_annotations_v080/{label}_r1.txt the "relevant" subset (object large, clear)
    <root>/mirflickr25k_annotations_v080/README.txt
    <root>/SYNTHETIC.txt                                marks the tree as generated (reports then
                                                        omit the paper's published numbers)

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
- Pixels. Every label has a visual signature (`SIGNATURES`): a hue of its own drawn as a shape of
  its own, on a random textured, nearly grey background. "Easy" images show large, saturated,
  unoccluded objects. A `hard_fraction` of images, spread over all topics, show the same objects
  tiny, faded towards the background, partly covered by noise patches, under heavy coloured
  noise and among grey distractor shapes: the label is hard to read from that image alone,
  while its neighbours (same topic, mostly easy) show it clearly.

Everything is drawn from numpy Generators seeded by `params.seed` (the world from one stream,
each image's pixels from its own), so the same seed writes byte-identical files.
"""

from __future__ import annotations

import colorsys
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pipeline.progress import progress

from pipeline.config import SyntheticParams

log = logging.getLogger(__name__)

ANNOTATION_DIR = "mirflickr25k_annotations_v080"
JPEG_QUALITY = 90

LABEL_KEEP = 0.6  # P(image carries a given core label of its topic)
EXTRA_LABEL_PROB = 0.15  # P(image carries one random extra label)
NO_LABEL_FRACTION = 0.03  # images with no label at all (background and distractors only)
NO_TAGS_FRACTION = 0.03  # images whose tag files are empty
JUNK_ONLY_FRACTION = 0.015  # images whose tags are only camera / Flickr / stop-word noise
N_BABY = (2, 3)  # the rare label: this many images (inclusive range)
RELEVANT_RADIUS = 0.17  # an easy object this large (radius / image size) makes the image `_r1`


@dataclass(frozen=True)
class Signature:
    """How a label looks: a hue (degrees) of its own, drawn as a shape of its own."""

    hue: float
    shape: str


# The visual labels, a subset of MIRFlickr's 24 potential labels; hues 30 degrees apart.
SIGNATURES: dict[str, Signature] = {
    "bird": Signature(0, "triangle"),
    "car": Signature(30, "square"),
    "clouds": Signature(60, "ring"),
    "dog": Signature(90, "plus"),
    "flower": Signature(120, "star"),
    "food": Signature(150, "hexagon"),
    "night": Signature(180, "halfdisc"),
    "people": Signature(210, "stripes"),
    "sea": Signature(240, "disc"),
    "sky": Signature(270, "diamond"),
    "tree": Signature(300, "xcross"),
    "water": Signature(330, "frame"),
    "baby": Signature(15, "chevron"),  # rare: only N_BABY images
}
VISUAL_LABELS = tuple(name for name in SIGNATURES if name != "baby")
EMPTY_LABEL = "lake"  # its annotation file exists and is empty
LABELS = tuple(sorted((*SIGNATURES, EMPTY_LABEL)))  # every annotation file written
RELEVANT_LABELS = ("bird", "car", "clouds", "dog", "flower", "night", "sea")  # get a `_r1` file
SHAPES = ("triangle", "square", "ring", "plus", "star", "hexagon", "halfdisc", "stripes",
          "disc", "diamond", "xcross", "frame", "chevron")

# Words for each label: a tuple per word, of its raw surface forms (canonical form first).
LABEL_WORDS: dict[str, list[tuple[str, ...]]] = {
    "bird": [("bird", "birds", "Birds", "Bird"), ("goose", "geese", "Geese"), ("duck", "ducks", "Ducks"),
             ("flying", "Flying", "flies"), ("wings", "wing", "Wings"), ("feathers", "feather"),
             ("seagull", "seagulls", "Seagull"), ("pigeon", "pigeons"), ("birding", "Birding")],
    "car": [("car", "cars", "Cars", "Car"), ("auto", "autos"), ("driving", "drive", "Driving"),
            ("road", "roads", "Road"), ("wheels", "wheel"), ("Ford", "ford"), ("vintage car", "Vintage Cars"),
            ("traffic", "Traffic"), ("parked", "parking")],
    "clouds": [("clouds", "cloud", "Clouds", "CLOUDS"), ("cloudy", "Cloudy"), ("storm", "storms", "Storm"),
               ("overcast",), ("cumulus",), ("weather", "Weather"), ("sky", "skies", "Sky")],
    "dog": [("dog", "dogs", "Dogs", "Dog", "DOG"), ("puppy", "puppies", "Puppy"), ("running", "run", "Running"),
            ("pet", "pets", "Pets"), ("labrador", "Labrador"), ("fetch",), ("leash",), ("terrier", "Terrier")],
    "flower": [("flower", "flowers", "Flowers", "Flower"), ("blossom", "blossoms", "Blossom"),
               ("petals", "petal"), ("bloom", "blooming", "blooms"), ("tulips", "tulip"), ("roses", "rose", "Roses"),
               ("daisy", "daisies"), ("macro", "Macro")],
    "food": [("food", "Food", "FOOD"), ("dinner", "Dinner"), ("lunch", "Lunch"), ("cooking", "cook", "Cooking"),
             ("eating", "eat", "Eating"), ("dessert", "desserts"), ("cake", "cakes"), ("bread",), ("fruit", "fruits")],
    "night": [("night", "Night", "nights"), ("nighttime", "night time"), ("lights", "light", "Lights"),
              ("dark", "Dark"), ("long exposure", "Long Exposure"), ("moon", "Moon"), ("stars", "star"),
              ("evening", "Evening")],
    "people": [("people", "People"), ("friends", "friend", "Friends"), ("family", "Family"),
               ("portrait", "portraits", "Portrait"), ("girl", "girls", "Girl"), ("boy", "boys"),
               ("children", "child", "kids"), ("women", "woman"), ("men", "man"), ("smiling", "smile", "Smile")],
    "sea": [("sea", "Sea", "SEA"), ("Sea Side", "seaside"), ("ocean", "Ocean", "oceans"), ("beach", "beaches", "Beach"),
            ("waves", "wave", "Waves"), ("coast", "coastline"), ("shore",), ("sand", "sandy"), ("surf", "surfing")],
    "sky": [("sky", "skies", "Sky", "SKY"), ("blue sky", "Blue Sky"), ("horizon",), ("sun", "Sun", "sunny"),
            ("sunrise", "Sunrise"), ("sunset", "sunsets", "Sunset"), ("blue", "Blue")],
    "tree": [("tree", "trees", "Trees", "Tree"), ("leaves", "leaf", "Leaves"), ("forest", "Forest", "forests"),
             ("woods", "wood"), ("branches", "branch"), ("oak", "oaks"), ("autumn", "Autumn", "fall"), ("green", "Green")],
    "water": [("water", "Water", "WATER"), ("reflection", "reflections", "Reflection"), ("river", "rivers", "River"),
              ("lake", "lakes", "Lake"), ("splash", "splashing"), ("swimming", "swim"), ("pond", "ponds"),
              ("drops", "drop", "waterdrops")],
    "baby": [("baby", "babies", "Baby"), ("newborn",), ("infant",), ("toddler",)],
}

# Themes: the labels a theme plausibly shows, and its own words.
THEMES: dict[str, tuple[tuple[str, ...], list[tuple[str, ...]]]] = {
    "beach": (("sea", "sky", "people", "water", "clouds"),
              [("beach", "Beach"), ("summer", "Summer"), ("vacation", "Vacation"), ("holiday", "holidays"), ("sunshine",), ("swimming", "swim")]),
    "harbour": (("sea", "water", "bird", "sky"),
                [("harbour", "harbor", "Harbour"), ("boats", "boat", "Boats"), ("pier",), ("port",), ("sailing", "sail"), ("fishing",)]),
    "city_night": (("night", "car", "people"),
                   [("city", "City", "cities"), ("downtown",), ("New York", "new york", "NYC"), ("buildings", "building"), ("skyline",), ("neon",)]),
    "street": (("car", "people", "night"),
               [("street", "streets", "Street"), ("urban", "Urban"), ("crossing",), ("bus", "buses"), ("taxis", "taxi"), ("London", "london")]),
    "garden": (("flower", "tree", "bird"),
               [("garden", "gardens", "Garden"), ("backyard",), ("spring", "Spring"), ("gardening",), ("plants", "plant"), ("bees", "bee")]),
    "park": (("tree", "dog", "people", "bird"),
             [("park", "Park", "parks"), ("walk", "walking"), ("grass",), ("bench", "benches"), ("playing", "play"), ("autumn", "Autumn")]),
    "forest": (("tree", "bird", "water", "sky"),
               [("forest", "Forest"), ("hiking", "hike"), ("trail", "trails"), ("moss",), ("nature", "Nature"), ("wildlife",)]),
    "lakeside": (("water", "bird", "tree", "sky"),
                 [("lake", "Lake", "lakes"), ("pond",), ("reflection", "reflections"), ("calm",), ("dock",), ("canoe",)]),
    "mountains": (("sky", "clouds", "tree", "water"),
                  [("mountains", "mountain", "Mountains"), ("snow", "Snow"), ("peak", "peaks"), ("valley",), ("landscape", "Landscape"), ("alps", "Alps")]),
    "storm": (("clouds", "sky", "water"),
              [("storm", "Storm"), ("rain", "raining", "Rain"), ("dramatic",), ("thunder",), ("wind", "windy"), ("weather",)]),
    "sunset": (("sky", "clouds", "sea"),
               [("sunset", "Sunset", "sunsets"), ("dusk",), ("golden",), ("silhouette", "silhouettes"), ("orange", "Orange"), ("glow",)]),
    "kitchen": (("food", "people"),
                [("kitchen",), ("homemade",), ("baking", "bake"), ("recipe", "recipes"), ("chocolate",), ("breakfast",)]),
    "restaurant": (("food", "people", "night"),
                   [("restaurant", "restaurants"), ("wine",), ("delicious", "yummy"), ("cafe", "Cafe"), ("dining",), ("table",)]),
    "market": (("food", "people", "flower"),
               [("market", "markets", "Market"), ("vegetables", "vegetable"), ("shopping",), ("stall",), ("fresh",), ("farmers",)]),
    "party": (("people", "food", "night"),
              [("party", "parties", "Party"), ("birthday", "Birthday"), ("celebration",), ("dancing", "dance"), ("drinks", "drink"), ("fun", "Fun")]),
    "wedding": (("people", "flower"),
                [("wedding", "Wedding", "weddings"), ("bride",), ("dress", "dresses"), ("ceremony",), ("love", "Love"), ("church",)]),
    "pets": (("dog", "people"),
             [("pet", "pets"), ("cute", "Cute"), ("playing", "play"), ("home",), ("sleeping", "sleep"), ("animal", "animals", "Animals")]),
    "roadtrip": (("car", "sky", "tree"),
                 [("roadtrip", "road trip", "Road Trip"), ("highway",), ("travel", "Travel"), ("desert",), ("countryside",), ("usa", "USA")]),
    "carshow": (("car", "people"),
                [("classic", "Classic"), ("vintage", "Vintage"), ("chrome",), ("race", "racing"), ("carshow", "car show"), ("motor", "motors")]),
    "birdwatching": (("bird", "tree", "sky"),
                     [("wildlife", "Wildlife"), ("nature", "Nature"), ("zoo", "Zoo"), ("birdwatching",), ("telephoto",), ("feathers",)]),
    "fireworks": (("night", "sky", "people"),
                  [("fireworks", "firework", "Fireworks"), ("festival", "festivals"), ("celebration",), ("july",), ("summer",), ("crowd",)]),
    "winter": (("tree", "sky", "dog", "clouds"),
               [("winter", "Winter"), ("snow", "Snow"), ("cold",), ("ice", "icy"), ("frost", "frosty"), ("december", "December")]),
    "farm": (("dog", "food", "tree"),
             [("farm", "farms", "Farm"), ("barn",), ("fields", "field"), ("tractor",), ("harvest",), ("cows", "cow")]),
    "botanic": (("flower", "water"),
                [("botanical",), ("colours", "colors", "colourful"), ("close-up", "closeup"), ("greenhouse",), ("macro", "Macro"), ("pink", "Pink")]),
}

# Flickr noise, independent of the topic.
GENERIC_TAGS = ("photo", "Photo", "photography", "2008", "2007", "explore", "Explore", "flickr", "abigfave",
                "interestingness", "supershot", "anawesomeshot", "nikon", "Nikon", "Nikon D80", "d80", "canon",
                "Canon", "Canon EOS 400D", "400d", "sony", "olympus", "dslr", "50mm", "img_4521", "dsc01234")
STOP_TAGS = ("the", "of", "and", "my", "a", "in", "at", "on", "me", "with")
JUNK_TAGS = ("2008", "2007", "d80", "400d", "50mm", "the", "of", "my", "nikon", "canon", "flickr", "abigfave",
             "img_4521", "dsc01234", "a")
FIRST_NAMES = ("john", "mary", "anna", "peter", "lucy", "mark", "sara", "tom", "eva", "paul", "kate", "ivan")
LAST_NAMES = ("smith", "jones", "brown", "miller", "davis", "garcia", "wilson", "moore", "taylor", "lee")


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


def clean_tag(raw: str) -> str:
    """MIRFlickr's cleaned tag form: lower case, spaces removed."""
    return raw.lower().replace(" ", "")


def _choice(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _surface(rng: np.random.Generator, group: tuple[str, ...]) -> str:
    """A raw form of a word: the canonical one half of the time, else a variant."""
    if len(group) == 1 or rng.random() < 0.5:
        return group[0]
    return group[1 + int(rng.integers(len(group) - 1))]


def _make_topics(rng: np.random.Generator, n_topics: int) -> list[Topic]:
    """Primary labels cycle through the visual labels (so each is a core label somewhere); the
    theme is one that shows the primary label, and adds 0-2 of its other labels."""
    order = [str(lab) for lab in rng.permutation(VISUAL_LABELS)]
    topics = []
    for t in range(n_topics):
        primary = order[t % len(order)]
        themes = [name for name, (labels, _) in THEMES.items() if primary in labels]
        theme = _choice(rng, themes)
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
            other = THEMES[_choice(rng, list(THEMES))][1]
            word = _choice(rng, other)
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
    tags = [_surface(rng, topic.pool[i]) for i in picks]
    if rng.random() < 0.15:  # the same word twice, in two forms ("dog", "Dogs")
        tags.append(_surface(rng, topic.pool[picks[0]]))
    tags += [_surface(rng, _choice(rng, all_words)) for _ in range(n_stray)]
    tags += [_choice(rng, GENERIC_TAGS) for _ in range(n_generic)]
    if rng.random() < 0.2:
        tags.append(_choice(rng, STOP_TAGS))
    if rng.random() < 0.2:
        tags.append(_choice(rng, owners))
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
    owners = [f"{_choice(rng, FIRST_NAMES)}_{_choice(rng, LAST_NAMES)}{int(rng.integers(1, 999))}" for _ in range(30)]
    all_words = [w for words in LABEL_WORDS.values() for w in words] + [w for _, ws in THEMES.values() for w in ws]
    images = [ImagePlan(number=i + 1, topic=int(topic_of[i]), hard=bool(hard[i])) for i in range(n)]
    for plan in images:
        topic = topics[plan.topic]
        if not no_labels[plan.number - 1]:
            labels = [lab for lab in topic.labels if rng.random() < LABEL_KEEP] or [topic.labels[0]]
            if rng.random() < EXTRA_LABEL_PROB:
                labels.append(_choice(rng, VISUAL_LABELS))
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
            plan.tags = list(dict.fromkeys([*plan.tags, *(_surface(rng, w) for w in LABEL_WORDS["baby"][:2])]))
    return World(topics=topics, images=images)


# ---------------------------------------------------------------------------------------------
# Pixels


def _rgb(hue: float, sat: float, val: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((hue % 360) / 360.0, sat, val), dtype=np.float32) * 255.0


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple[int, int, int]) -> None:
    """Draw `shape` centred at (cx, cy) with radius r (pixels)."""
    box = (cx - r, cy - r, cx + r, cy + r)
    w = max(1, round(r * 0.4))
    if shape == "disc":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle((cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r), fill=fill)
    elif shape == "triangle":
        draw.regular_polygon((cx, cy, r), 3, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=w)
    elif shape == "plus":
        draw.rectangle((cx - r, cy - 0.22 * r, cx + r, cy + 0.22 * r), fill=fill)
        draw.rectangle((cx - 0.22 * r, cy - r, cx + 0.22 * r, cy + r), fill=fill)
    elif shape == "star":
        pts = [(cx + (r if k % 2 == 0 else 0.45 * r) * math.sin(k * math.pi / 5),
                cy - (r if k % 2 == 0 else 0.45 * r) * math.cos(k * math.pi / 5)) for k in range(10)]
        draw.polygon(pts, fill=fill)
    elif shape == "hexagon":
        draw.regular_polygon((cx, cy, r), 6, fill=fill)
    elif shape == "halfdisc":
        draw.pieslice((cx - r, cy - 0.5 * r, cx + r, cy + 1.5 * r), 180, 360, fill=fill)
    elif shape == "stripes":
        for k in range(3):
            y = cy - r + k * 0.8 * r
            draw.rectangle((cx - r, y, cx + r, y + 0.4 * r), fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)], fill=fill)
    elif shape == "xcross":
        draw.line((cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r), fill=fill, width=w)
        draw.line((cx - 0.8 * r, cy + 0.8 * r, cx + 0.8 * r, cy - 0.8 * r), fill=fill, width=w)
    elif shape == "frame":
        draw.rectangle((cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r), outline=fill, width=w)
    elif shape == "chevron":
        draw.polygon([(cx - r, cy - 0.5 * r), (cx, cy + 0.3 * r), (cx + r, cy - 0.5 * r),
                      (cx + r, cy + 0.2 * r), (cx, cy + r), (cx - r, cy + 0.2 * r)], fill=fill)
    else:  # pragma: no cover - SIGNATURES and SHAPES are fixed above
        raise ValueError(f"unknown shape {shape}")


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A nearly grey textured background (size, size, 3) float32, and its base colour."""
    base = _rgb(rng.uniform(0, 360), rng.uniform(0.0, 0.12), rng.uniform(0.35, 0.75))
    g = int(rng.integers(3, 8))
    low = rng.standard_normal((g, g)).astype(np.float32)
    tex = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC))
    fine = rng.standard_normal((size, size), dtype=np.float32)
    shade = rng.uniform(10, 28) * tex + rng.uniform(2, 6) * fine
    return base[None, None, :] + shade[:, :, None], base


def render_image(plan: ImagePlan, size: int, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """Draw one image; returns it and the labels it shows large and clear (for `_r1`)."""
    bg, base = _background(rng, size)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    n_distractors = int(rng.integers(3, 8)) if plan.hard else int(rng.integers(0, 3))
    for _ in range(n_distractors):  # grey shapes of every kind: shape alone is not the label
        grey = int(base.mean() + rng.choice([-1, 1]) * rng.uniform(20, 70) * (0.5 if plan.hard else 1.0))
        r = size * (rng.uniform(0.03, 0.07) if plan.hard else rng.uniform(0.06, 0.16))
        _draw_shape(draw, _choice(rng, SHAPES), rng.uniform(r, size - r), rng.uniform(r, size - r), r, (grey,) * 3)
    relevant, objects = [], []
    for label in plan.labels:
        sig = SIGNATURES[label]
        n_inst = 1 if plan.hard else 1 + int(rng.random() < 0.3)
        for k in range(n_inst):
            hue = sig.hue + rng.uniform(-5, 5)
            colour = _rgb(hue, rng.uniform(0.8, 1.0), rng.uniform(0.75, 1.0))
            if plan.hard:
                r = size * rng.uniform(0.03, 0.06)
                colour = base + rng.uniform(0.15, 0.35) * (colour - base)  # faded towards the background
            else:
                r = size * (rng.uniform(0.13, 0.26) if k == 0 else rng.uniform(0.08, 0.14))
                if k == 0 and r >= RELEVANT_RADIUS * size:
                    relevant.append(label)
            cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
            _draw_shape(draw, sig.shape, cx, cy, r, tuple(int(c) for c in np.clip(colour, 0, 255)))
            objects.append((cx, cy, r))
    arr = np.asarray(img, dtype=np.float32).copy()
    if plan.hard:  # noise patches over most objects, heavy coloured noise
        for cx, cy, r in objects:
            if rng.random() < 0.6:
                w, h = (rng.uniform(0.8, 1.6, 2) * r).astype(int) + 1
                x0 = int(np.clip(cx - w / 2 + rng.uniform(-0.5, 0.5) * r, 0, size - 1))
                y0 = int(np.clip(cy - h / 2 + rng.uniform(-0.5, 0.5) * r, 0, size - 1))
                patch = arr[y0:y0 + h, x0:x0 + w]
                patch[...] = base + 35.0 * rng.standard_normal(patch.shape, dtype=np.float32)
        sigma = rng.uniform(18, 30)
    else:
        sigma = rng.uniform(3, 8)
    arr += np.float32(sigma) * rng.standard_normal(arr.shape, dtype=np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), relevant


def _jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _readme(params: SyntheticParams, counts: dict[str, int]) -> str:
    lines = [
        "MIRFLICKR-25000 style annotations (v080 layout) -- SYNTHETIC WORLD",
        "",
        "This folder was written by MangoNet's `mango synthesize` stage, not by the MIRFlickr",
        "team; it follows the layout of mirflickr25k_annotations_v080 so that the MIRFlickr",
        "adapter reads it unchanged.",
        "",
        "Each file <label>.txt lists, one per line, the numbers N of the images im<N>.jpg on which",
        "the label is present (the 'potential' labels). A file <label>_r1.txt lists the subset of",
        "images in which the label is 'relevant': the object is large and clearly visible.",
        "",
        f"generator: seed={params.seed} n_images={params.n_images} image_size={params.image_size}"
        f" n_topics={params.n_topics} hard_fraction={params.hard_fraction}",
        "",
        "label           images   relevant",
    ]
    for label in LABELS:
        rel = str(counts.get(f"{label}_r1", "")) if label in RELEVANT_LABELS else "-"
        lines.append(f"{label:<15} {counts[label]:>6}   {rel:>8}")
    return "\n".join(lines) + "\n"


SYNTHETIC_MARKER = "SYNTHETIC.txt"


def generate(root: Path, params: SyntheticParams) -> dict:
    """Write the synthetic world under `root` in the MIRFlickr-25k layout; returns counts."""
    root = Path(root)
    world = plan_world(params)
    img_dir = root / "mirflickr"
    raw_dir, clean_dir = img_dir / "meta" / "tags_raw", img_dir / "meta" / "tags"
    ann_dir = root / ANNOTATION_DIR
    for d in (raw_dir, clean_dir, ann_dir):
        d.mkdir(parents=True, exist_ok=True)
    members: dict[str, list[int]] = {label: [] for label in LABELS}
    relevant: dict[str, list[int]] = {label: [] for label in RELEVANT_LABELS}
    for plan in progress(world.images, desc="synthesize", unit="img"):
        rng = np.random.default_rng([params.seed, 1, plan.number])
        img, rel = render_image(plan, params.image_size, rng)
        (img_dir / f"im{plan.number}.jpg").write_bytes(_jpeg_bytes(img))
        (raw_dir / f"tags{plan.number}.txt").write_text("".join(f"{t}\n" for t in plan.tags))
        (clean_dir / f"tags{plan.number}.txt").write_text("".join(f"{clean_tag(t)}\n" for t in plan.tags))
        for label in plan.labels:
            members[label].append(plan.number)
        for label in rel:
            if label in relevant:
                relevant[label].append(plan.number)
    for label, numbers in members.items():
        (ann_dir / f"{label}.txt").write_text("".join(f"{n}\n" for n in numbers))
    for label, numbers in relevant.items():
        (ann_dir / f"{label}_r1.txt").write_text("".join(f"{n}\n" for n in numbers))
    per_label = {label: len(v) for label, v in members.items()}
    per_label.update({f"{label}_r1": len(v) for label, v in relevant.items()})
    (ann_dir / "README.txt").write_text(_readme(params, per_label))
    (root / SYNTHETIC_MARKER).write_text("Generated by `mango synthesize`: not the real MIRFlickr-25k.\n")
    counts = {
        "images": len(world.images),
        "topics": len(world.topics),
        "labels": len(LABELS),
        "relevant_labels": len(RELEVANT_LABELS),
        "hard_images": sum(p.hard for p in world.images),
        "images_without_labels": sum(not p.labels for p in world.images),
        "multi_label_images": sum(len(p.labels) > 1 for p in world.images),
        "images_without_tags": sum(not p.tags for p in world.images),
        "images_with_junk_tags_only": sum(bool(p.tags) and set(p.tags) <= set(JUNK_TAGS) for p in world.images),
        "raw_tags": sum(len(p.tags) for p in world.images),
        "per_label": per_label,
    }
    log.info(
        "synthetic: %d images (%d hard) in %d topics, %d labels, %d multi-label, %d without labels, %d without tags",
        counts["images"], counts["hard_images"], counts["topics"], counts["labels"],
        counts["multi_label_images"], counts["images_without_labels"], counts["images_without_tags"],
    )
    return counts

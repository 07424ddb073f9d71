"""The words and looks of the synthetic world, and how a word is drawn.

Each label's visual signature (`SIGNATURES`: a hue and a shape of its own), the shapes, the word
groups of every label and theme (a tuple per word of its raw surface forms, canonical first),
Flickr noise tags, stop words, owner names, and MIRFlickr's cleaned tag form (`clean_tag`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def clean_tag(raw: str) -> str:
    """MIRFlickr's cleaned tag form: lower case, spaces removed."""
    return raw.lower().replace(" ", "")


def choice(rng: np.random.Generator, seq):
    """One element of `seq`, drawn with a single `rng.integers` call."""
    return seq[int(rng.integers(len(seq)))]


def surface(rng: np.random.Generator, group: tuple[str, ...]) -> str:
    """A raw form of a word: the canonical one half of the time, else a variant."""
    if len(group) == 1 or rng.random() < 0.5:
        return group[0]
    return group[1 + int(rng.integers(len(group) - 1))]


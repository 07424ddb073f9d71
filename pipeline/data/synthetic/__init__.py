"""The synthetic tagged-photo world of the default configuration (`mango synthesize`).

`vocabulary` (the words), `world` (topics, owners and each image's plan), `render` (pixels) and
`write` (the on-disk collection in the layout the NUS-WIDE adapter reads). Imports only the
top-level modules.
"""

"""Text: tokenise, lemmatise (WordNet) and build the term vocabulary (`mango lemmatise`), and the
visual attributes of captions for semantic search. Imports only the top-level modules.
"""

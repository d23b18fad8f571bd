"""Entity-to-entity stance rules over spaCy's dependency parse, driven by a cue lexicon."""

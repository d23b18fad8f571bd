"""The preannotate stage's parts: actors and linking, domain patterns, rule files, the spaCy component, the cache."""

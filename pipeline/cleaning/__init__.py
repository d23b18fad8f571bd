"""The ingest stage's steps: reading the corpus, the boilerplate rules, cleaning an article, dates, near-duplicates."""

"""The Hugging Face dataset that publish writes: rows and features, the card and its figure."""

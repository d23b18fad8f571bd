"""Human work: Label Studio snapshots read into annotators' versions, their resolution and the story split."""

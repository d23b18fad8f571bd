"""Research commands on evaluation data (SEESAW, re3d), outside every stage's import closure."""

"""Demo data generators: a Fineract-schema MIS database and survey submissions."""

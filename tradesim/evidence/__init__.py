"""Evidence: how sure a result is (`significance`), how many trials it was picked from (`trials`),
and whether the models that made it could have known the answers (`cutoffs`, `probe`)."""

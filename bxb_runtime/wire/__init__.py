"""The AWS wire contracts, one module each: the names and shapes both sides of a contract use."""

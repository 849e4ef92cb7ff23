"""Small programs that misbehave on purpose, for trying memwarden out."""

"""The model families, one folder each; :mod:`zoo.hub` lists their specs. Families never import each other."""

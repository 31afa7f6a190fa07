"""The streaming side of rankae-tagger and the ``tagger`` command."""

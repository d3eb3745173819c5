"""Files on disk: which names count, walking the tree, reading an image and its words, and the
one decision of what a file means for its row."""

"""The fixed choices some config keys take, defined once for the schemas that check them and the code
that uses them (light: no torch, so composing a config stays cheap)."""

SPLITS = ("train", "val", "test")  # the splits of a dataset (and of eval folders' names)
RESIZES = ("aspect", "simple")  # how an image is brought to a size: scale to cover and centre-crop | stretch

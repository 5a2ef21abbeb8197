"""File tools behind `cnnexp data`: build an HDF5 file, cut faces from a video, show a dataset."""

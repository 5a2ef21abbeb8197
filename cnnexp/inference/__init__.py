"""Using a trained run: restore its model and data, score images (plain and ten-crop), read user images,
and write the reports (tables, confusion matrix, image grids) that eval and the later commands share."""

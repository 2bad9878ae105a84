"""Data: sample-data locator, COCO -> TFRecords, the synthetic shapes set, tf.data input."""

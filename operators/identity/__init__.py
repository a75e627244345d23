"""Identity stitching: one customer across anonymous ids, devices and emails; which
partition owns a customer (``routing``), what an event claims and how profiles merge
(``merge``)."""

"""Names that one part of the project writes and another reads: defined here once."""
# metric key, visual key and image-file suffix of the un-adapted network's output (``psnr_unadapted``, ...)
UNADAPTED = '_unadapted'
# the tables scripts/results_table.py writes into a test run's results folder
METRICS_CSV, METRICS_MD = 'metrics.csv', 'metrics.md'
# a made test set's faces (LQ pixel coordinates) and provenance (scripts/make_testset.py)
LANDMARKS_JSON, META_JSON = 'landmarks.json', 'meta.json'
# the official weights as metaf2n-convert writes them and metaf2n-infer reads them
NET_G_FILE, NET_MASK_FILE = 'MetaF2N_net_g.pth', 'MetaF2N_net_mask.pth'

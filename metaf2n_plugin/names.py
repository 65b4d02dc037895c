"""Names that one part of the project writes and another reads: defined here once."""
# metric key, visual key and image-file suffix of the un-adapted network's output (``psnr_unadapted``, ...), and the
# suffix of the adapted-minus-unadapted column of the results tables (``psnr_delta``)
UNADAPTED, DELTA = '_unadapted', '_delta'
# the tables scripts/results_table.py writes into a test run's results folder
METRICS_CSV, METRICS_MD = 'metrics.csv', 'metrics.md'
# a made test set's faces (LQ pixel coordinates) and provenance (scripts/make_testset.py)
LANDMARKS_JSON, META_JSON = 'landmarks.json', 'meta.json'
# the project's weights folder, and the official weights as metaf2n-convert writes them and metaf2n-infer reads them
WEIGHTS_DIR, NET_G_FILE, NET_MASK_FILE = 'weights', 'MetaF2N_net_g.pth', 'MetaF2N_net_mask.pth'
# the faces scripts/extract_face_pairs.py found, which its --landmarks (and metaf2n-infer's) reads back
FACES_JSON = 'faces.json'
# the super-resolved photo's file name ends so: <stem>_metaf2n.png (metaf2n-infer, the page's download)
OUTPUT_SUFFIX = '_metaf2n'

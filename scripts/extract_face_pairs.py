r"""Precompute MetaF2N's face pairs for a folder of LQ photos.

Writes, under --out, the original MetaF2N layout plus masks and a record of the faces:

    Face_LQ/<stem>_<i>.png: LQ face crops
    Face_HQ/<stem>_<i>.png: pseudo ground truth at --scale, restored by --restorer
    Face_Mask/<stem>_<i>.png: where Face_HQ is covered by the restored face (255)
    faces.json: per image, its size, scale, and every face's landmarks, box, score and crop

faces.json can be given back as --landmarks (source `landmarks`) to redo pairs without the detector. An image
that cannot be read (or whose faces cannot be used) is reported and skipped; the others are still done, and the
exit status is then 1.

Examples:
    python scripts/extract_face_pairs.py --lq datasets/RealFaces/LQ --out datasets/RealFaces
    python scripts/extract_face_pairs.py --lq LQ --gt GT --out pairs --landmarks LQ/faces.json
"""
import os
import sys

import torch
from tqdm import tqdm

from metaf2n_plugin.atomic_write import write_json
from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.faces import FacePairExtractor, write_pairs
from metaf2n_plugin.faces.detection import RETINAFACE_MODELS
from metaf2n_plugin.faces.restoration import GPEN_RELEASES
from metaf2n_plugin.image_io import IMAGE_EXTENSIONS, image_with_stem, images_in, read_image
from metaf2n_plugin.names import FACES_JSON
from metaf2n_plugin.weights import DOWNLOAD_HELP, WEIGHTS_HELP


def parse_args(argv):
    parser = parser_from_doc(__doc__)
    parser.add_argument('--lq', required=True, help='folder of LQ photos')
    parser.add_argument('--gt', help='folder of GT photos with the same stems (implies --restorer oracle)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--scale', type=int, default=4, help='SR factor (default 4)')
    parser.add_argument(
        '--source',
        choices=['retinaface', 'mtcnn', 'landmarks'],
        help='where faces come from (default: landmarks with --landmarks, else retinaface); mtcnn reads its weights '
        'from facenet-pytorch\'s wheel (docs/weights.md)')
    parser.add_argument(
        '--landmarks',
        help='source landmarks: one JSON for the folder (default: a sidecar '
        '<stem>.json next to every image)')
    parser.add_argument('--detector', choices=sorted(RETINAFACE_MODELS), default='retinaface_resnet50')
    parser.add_argument('--score-threshold', type=float, default=0.9, help='detector score a face needs (0.9)')
    parser.add_argument('--restorer', choices=['gpen', 'oracle', 'identity'], help='default: oracle with --gt, or gpen')
    parser.add_argument(
        '--restorer-size',
        type=int,
        choices=sorted(GPEN_RELEASES),
        default=512,
        help='GPEN-BFR-512 (default, test time) or GPEN-BFR-256 (training); the size faces are '
        'aligned at')
    parser.add_argument('--batch-size', type=int, default=4, help='faces per GPEN forward pass')
    parser.add_argument(
        '--detector-weights',
        help=f'RetinaFace weights file or folder ({WEIGHTS_HELP}); for mtcnn the facenet-pytorch '
        '2.6.0 wheel or its folder')
    parser.add_argument('--restorer-weights', help=f'GPEN weights file or folder ({WEIGHTS_HELP})')
    parser.add_argument('--download', action='store_true', help=DOWNLOAD_HELP)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    args.source = args.source or ('landmarks' if args.landmarks else 'retinaface')
    args.restorer = args.restorer or ('oracle' if args.gt else 'gpen')
    return args


def build_extractor(args):
    source = {'type': 'landmarks', 'json_path': args.landmarks}
    if args.source == 'retinaface':
        source = dict(
            type='retinaface',
            model=args.detector,
            score_threshold=args.score_threshold,
            weights=args.detector_weights,
            download=args.download)
    elif args.source == 'mtcnn':
        source = dict(type='mtcnn', weights=args.detector_weights, download=args.download)
    restorer = {'type': args.restorer, 'size': args.restorer_size}
    if args.restorer == 'gpen':
        restorer.update(weights=args.restorer_weights, download=args.download, batch_size=args.batch_size)
    options = {'scale': args.scale, 'source': source, 'restorer': restorer}
    return FacePairExtractor.from_options(options, device=args.device)


def main(argv=None):
    args = parse_args(argv)
    names = [os.path.basename(path) for path in images_in(args.lq)] if os.path.isdir(args.lq) else []
    stems = [os.path.splitext(n)[0] for n in names]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if not names or clashes:
        problem = f'no images ({", ".join(IMAGE_EXTENSIONS)})' if not names else f'images sharing a stem: {clashes}'
        print(f'{args.lq}: {problem}; pairs are named after the file stem', file=sys.stderr)
        return 2
    if args.restorer == 'oracle' and not args.gt:
        print('--restorer oracle needs --gt (the GT photos)', file=sys.stderr)
        return 2
    try:
        extractor = build_extractor(args)
        extractor.load()
    except (OSError, ValueError) as err:  # missing weights or landmark file, bad options
        print(err, file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)

    record, failed, without_faces, num_faces = {}, [], [], 0
    for name, stem in zip(tqdm(names, desc='face pairs', unit='image'), stems):
        path = os.path.join(args.lq, name)
        try:
            lq = read_image(path)
            gt = None if not args.gt else read_image(image_with_stem(args.gt, stem) or os.path.join(args.gt, name))
            pairs = extractor(lq, gt, image_path=path)
        except (OSError, ValueError) as err:
            tqdm.write(f'skipped {name}: {err}', file=sys.stderr)
            failed.append(name)
            continue
        write_pairs(args.out, stem, pairs)
        record[name] = {
            'size': [lq.shape[1], lq.shape[0]],
            'scale': args.scale,
            'faces': [{
                **pair.face.to_json(), 'crop': list(pair.box)
            } for pair in pairs]
        }
        num_faces += len(pairs)
        if not pairs:
            without_faces.append(name)
    write_json(os.path.join(args.out, FACES_JSON), record)

    print(f'{len(names)} images, {num_faces} faces, {len(without_faces)} images without faces, '
          f'{len(failed)} failed' + (f': {", ".join(failed)}' if failed else '') + f' -> {args.out}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

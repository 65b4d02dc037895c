"""Time from upload to result in metaf2n-app's page against metaf2n-infer on the same photo and settings.

The photo: Grace Hopper (matplotlib's), her top 512 x 512 shrunk to a 256 x 256 LQ photo (cv2.INTER_AREA), with that
square enlarged 2x (bicubic) as its 1024 x 1024 ground truth, so that both take the faces' pseudo GT from it (the
oracle: GPEN's weights cannot be downloaded here). Weights: Real-ESRGAN x4plus with the committed MaskNet (`make
demo` writes both into weights/), faces by MTCNN, tile 256, the default precision (bf16 where the CPU runs it fast).
The same work on both sides: the adapted and the plain output, the face panels, the output PNG. Variants, each in
fresh processes (bench/harness.py), alternating:

- infer: metaf2n-infer's work on the photo with the networks loaded (build_resolver, then super_resolve with
  --side-by-side --save-faces): one untimed photo, then --repeats timed ones;
- app: a metaf2n-app server started apart, the photo and its GT uploaded with Gradio's Python client, which waits for
  the result and downloads its files: one untimed request (it loads the networks), then --repeats timed ones; the
  peak memory is the server's;
- command: the metaf2n-infer command on the photo, start to exit (imports and loading included), --repeats times;
  the peak memory is the command's.

Target: app <= 1.10 x infer (the page adds at most 10 %).

    python bench/app.py [--rounds 2] [--repeats 2] [--model weights/RealESRGAN_x4plus.pth]
        [--mask weights/x4plus_masknet_meta_net_mask.pth] [--check]
"""
import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

from harness import alternate, arguments, flags, measure, median_of, paired_ratio, report

TARGET = 1.10
SIDE = 256
VARIANTS = ('infer', 'app', 'command')


def make_photo(folder):
    """``folder``/LQ/grace_hopper.png (256 x 256) and ``folder``/GT/grace_hopper.png (1024 x 1024)."""
    import cv2

    from metaf2n_plugin.faces import builtin_photo
    from metaf2n_plugin.image_io import write_image

    square = builtin_photo('grace_hopper')[0][:512]
    for kind in ('LQ', 'GT'):
        os.makedirs(os.path.join(folder, kind))
    write_image(
        os.path.join(folder, 'LQ', 'grace_hopper.png'), cv2.resize(square, (SIDE, SIDE), interpolation=cv2.INTER_AREA))
    gt = cv2.resize(square, (4 * SIDE, 4 * SIDE), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    write_image(os.path.join(folder, 'GT', 'grace_hopper.png'), gt)


def infer_argv(args, out):
    """metaf2n-infer's arguments for the photo: its outputs into ``out``, with the page's images."""
    photo, gt = (os.path.join(args.work, kind, 'grace_hopper.png') for kind in ('LQ', 'GT'))
    return [
        photo, '-o', out, '--model', args.model, '--mask', args.mask, '--gt',
        os.path.dirname(gt), '--detector', 'mtcnn', '--side-by-side', '--save-faces'
    ]


def child_infer(args):
    from metaf2n_plugin import infer

    parsed = infer.build_parser().parse_args(infer_argv(args, os.path.join(args.work, 'infer')))
    os.makedirs(parsed.out, exist_ok=True)
    resolver = infer.build_resolver(parsed)
    report(measure(lambda: infer.super_resolve(resolver, parsed.inputs[0], parsed.out, {}, parsed), args.repeats))


def child_command(args):
    command = [os.path.join(os.path.dirname(sys.executable), 'metaf2n-infer')]
    command += infer_argv(args, os.path.join(args.work, 'command'))
    result = measure(lambda: subprocess.run(command, check=True, capture_output=True), args.repeats, warmup=False)
    report({**result, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024})


def child_app(args):
    os.environ.update(HF_HUB_OFFLINE='1', HF_HUB_DISABLE_TELEMETRY='1')  # before gradio_client imports the hub
    from gradio_client import Client, handle_file

    from metaf2n_plugin import app
    from metaf2n_plugin.models.precision import resolve_precision

    with socket.socket() as probe:
        probe.bind((app.HOST, 0))
        port = probe.getsockname()[1]
    no_gpen = os.path.join(args.work, 'no_gpen')  # the oracle, as metaf2n-infer --gt, even where GPEN is found
    os.makedirs(no_gpen, exist_ok=True)
    script = os.path.join(os.path.dirname(sys.executable), 'metaf2n-app')
    server = subprocess.Popen(
        [script, '--port',
         str(port), '--model', args.model, '--mask', args.mask, '--restorer-weights', no_gpen],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        url = f'http://{app.HOST}:{port}/'
        client = connect(Client, url, server)
        photo, gt = (handle_file(os.path.join(args.work, kind, 'grace_hopper.png')) for kind in ('LQ', 'GT'))
        label = app.weights_choices(args.model, args.mask)[0].label
        half = resolve_precision('auto', 'cpu') != 'fp32'  # the page's default: metaf2n-infer's precision
        inputs = (photo, gt, label, None, app.TILE, half, 'mtcnn')
        result = measure(lambda: client.predict(*inputs, api_name='/super_resolve'), args.repeats)
        with open(f'/proc/{server.pid}/status') as status:
            peak = next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))
    finally:
        server.terminate()
        server.wait()
    report({**result, 'peak_rss_mb': peak / 1024})


def connect(client_class, url, server, timeout=300):
    """A Gradio client of the page at ``url`` once it answers; exits if the ``server`` process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f'metaf2n-app exited {server.returncode}')
        try:
            return client_class(url, verbose=False, analytics_enabled=False)
        except Exception:  # not listening yet: the client raises its HTTP library's own errors
            time.sleep(1)
    sys.exit(f'metaf2n-app did not answer at {url} within {timeout} s')


def main():
    parser = arguments(__doc__, blocks=False)
    parser.add_argument('--model', default='weights/RealESRGAN_x4plus.pth', help='the SR network\'s weights')
    parser.add_argument('--mask', default='weights/x4plus_masknet_meta_net_mask.pth', help='MaskNet\'s weights')
    parser.add_argument('--work', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return {'infer': child_infer, 'app': child_app, 'command': child_command}[args.child](args)
    missing = [path for path in (args.model, args.mask) if not os.path.isfile(path)]
    if missing:
        sys.exit(
            f'not found: {", ".join(missing)}; `make demo` (or `metaf2n-convert pretrained/x4plus_masknet_meta.pth '
            '--download`) writes them')
    from metaf2n_plugin.models.precision import cpu_description, resolve_precision

    with tempfile.TemporaryDirectory() as work:
        make_photo(work)
        forwarded = flags(args, 'repeats', 'model', 'mask') + ['--work', work]
        results = alternate(os.path.abspath(__file__), list(VARIANTS), args.rounds, forwarded)
    print(f'CPU: {cpu_description()}; super-resolution in {resolve_precision("auto", "cpu")}')
    print(f'{SIDE}x{SIDE} LQ photo, Real-ESRGAN x4plus + MaskNet ({args.mask}), MTCNN, oracle faces, tile 256; '
          f'{args.rounds} rounds x {args.repeats} photos (medians)')
    print('| variant | s per photo | / infer | peak RSS |\n|---|---:|---:|---:|')
    for variant in VARIANTS:
        ratio, _ = paired_ratio(results, variant, 'infer')
        print(f'| {variant} | {median_of(results[variant], "seconds"):.2f} | {ratio:.2f} | '
              f'{median_of(results[variant], "peak_rss_mb"):.0f} MB |')
    ratio, ratios = paired_ratio(results, 'app', 'infer')
    print(f'app / infer = {ratio:.3f} (rounds: {", ".join(f"{r:.3f}" for r in ratios)}; target <= {TARGET})')
    if args.check and ratio > TARGET:
        sys.exit(1)


if __name__ == '__main__':
    main()

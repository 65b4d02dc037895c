"""The paper's route on a GPU, in one table: what a CUDA user checks before a 400,000-iteration run.

1. ``meta4``: one meta-iteration of 4 tasks (``--tasks``) of the full x4plus (RRDBNet-23) with the paper's outer
   loss and SSG (options/train_metaf2n_ssg.yml: L1 + 0.5 LPIPS + 0.1 GAN + SSG + mask regulariser; LPIPS's trunk
   random when its AlexNet weights are missing, which costs the same), random task pixels at the paper's sizes (4
   faces of 32 x 32 LQ, 4 backgrounds of 64 x 64 LQ per task): seconds per iteration (median of --repeats after a
   warm-up) and peak memory;
2. ``infer``: Algorithm 2 on a built-in real photo (datasets/real, made when missing) with x4plus and the committed
   MaskNet, in the device's half precision (auto: bf16, else fp16) and in fp32: seconds per photo and PSNR-Y of both
   against the GT, and between the two outputs;
3. ``torchrun``: ``torchrun --nproc_per_node=1 -m basicsr.train -opt options/train_metaf2n_tiny.yml --launcher
   pytorch`` for 2 iterations (NCCL on CUDA, gloo on a CPU): its exit status and seconds.

Weights: weights/RealESRGAN_x4plus.pth and weights/x4plus_masknet_meta_net_mask.pth (metaf2n-convert
pretrained/x4plus_masknet_meta.pth --download, before going offline); a random RRDBNet of --blocks blocks when
missing (timings stay valid at 23 blocks, PSNRs do not). bench/gpu_check.sh runs it; tests/test_gpu_check.py runs
it on CUDA and skips without.

    bash bench/gpu_check.sh
    python bench/gpu_check.py --device cpu --blocks 1 --repeats 1 --tasks 1 --photo-side 64
"""
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X4PLUS = os.path.join('weights', 'RealESRGAN_x4plus.pth')
MASK = os.path.join('weights', 'x4plus_masknet_meta_net_mask.pth')
REAL_SET = os.path.join('datasets', 'real', 'Real_ood_128')


def synchronize(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def peak_gib(device):
    import resource

    import torch
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def meta_iteration(device, blocks, repeats, count=4):
    """``(seconds per meta-iteration of ``count`` tasks, peak GiB)`` of the paper's configuration with SSG."""
    import statistics

    import torch
    import yaml
    from basicsr.models import build_model

    sys.path.insert(0, os.path.join(REPO, 'bench'))
    from metatrain import tasks

    with open(os.path.join(REPO, 'options', 'train_metaf2n_ssg.yml'), encoding='utf-8') as f:
        opt = yaml.safe_load(f)
    opt.update(
        num_gpu=int(device.type == 'cuda'), is_train=True, dist=False, rank=0, world_size=1, face_restorer='oracle')
    opt['network_g']['num_block'] = blocks
    opt['path'] = {key: None for key in opt['path']}
    if blocks == 23 and os.path.isfile(X4PLUS):
        opt['path'].update(pretrain_network_g=X4PLUS, param_key_g='params_ema')
    opt['train']['perceptual_opt']['random_weights'] = True
    torch.manual_seed(0)
    model = build_model(opt)
    model.feed_data({key: value.to(device) for key, value in tasks(count).items()})
    seconds = []
    for i in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        model.optimize_parameters(i + 1)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[1:]), peak_gib(device)


def inference(device, side, blocks):
    """``{precision: (seconds, PSNR-Y against GT)}`` for half and fp32, and the PSNR between the two outputs."""
    import cv2
    from basicsr.metrics import calculate_psnr

    from metaf2n_plugin.image_io import read_image
    from metaf2n_plugin.models.precision import resolve_precision

    if not os.path.isdir(REAL_SET):
        subprocess.check_call([sys.executable, os.path.join(REPO, 'scripts', 'make_real_testset.py')])
    lq, gt = (read_image(os.path.join(REAL_SET, kind, 'grace_hopper.png')) for kind in ('LQ', 'GT'))
    if side != lq.shape[0]:  # a smaller photo for a quick run; its faces are then drawn from landmarks scaled alike
        lq, gt = (cv2.resize(im, (side * k, side * k), interpolation=cv2.INTER_AREA) for im, k in ((lq, 1), (gt, 4)))
    weights = [X4PLUS, MASK] if os.path.isfile(X4PLUS) and os.path.isfile(MASK) else [None, None]
    half = resolve_precision('auto', device)
    outputs, results = {}, {}
    for precision in (half, 'fp32'):
        resolver = inference_resolver(weights, device, precision, side, blocks)
        resolver.enhance(lq, 'grace_hopper.png', gt)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        outputs[precision], _ = resolver.enhance(lq, 'grace_hopper.png', gt)
        synchronize(device)
        psnr = calculate_psnr(outputs[precision] * 255, gt * 255, crop_border=4, test_y_channel=True)
        results[precision] = (time.perf_counter() - start, psnr)
    return half, results, calculate_psnr(outputs[half] * 255, outputs['fp32'] * 255, crop_border=0)


def inference_resolver(weights, device, precision, side, blocks):
    import torch
    from basicsr.archs.rrdbnet_arch import RRDBNet

    from metaf2n_plugin.archs.masknet_arch import MaskNet
    from metaf2n_plugin.photo_super_resolver import PhotoSuperResolver

    model, mask = weights
    if model is None:
        torch.manual_seed(0)
        model, mask = RRDBNet(3, 3, scale=4, num_feat=64, num_block=blocks, num_grow_ch=32), MaskNet(6, 64, 8)
    json_path = os.path.join(REAL_SET, 'landmarks.json') if side == 128 else scaled_landmarks(side)
    faces = {'type': 'landmarks', 'json_path': json_path}
    return PhotoSuperResolver(
        model,
        mask,
        faces=faces,
        restorer={
            'type': 'oracle',
            'size': 512
        },
        device=device,
        precision=precision,
        tile=0,
        log=lambda line: None)


def scaled_landmarks(side):
    """The set's landmarks.json with every point scaled from 128 to ``side`` pixels, in a temporary file."""
    import json
    with open(os.path.join(REAL_SET, 'landmarks.json'), encoding='utf-8') as f:
        table = json.load(f)
    for entry in table.values():
        for face in entry['faces']:
            face['landmarks'] = [[v * side / 128 for v in point] for point in face['landmarks']]
    path = os.path.join(tempfile.mkdtemp(), 'landmarks.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(table, f)
    return path


def torchrun(device):
    """``(exit status, seconds)`` of a 2-iteration distributed run on one process."""
    if not os.path.isdir(os.path.join('datasets', 'tiny')):
        subprocess.check_call([sys.executable, os.path.join(REPO, 'scripts', 'make_tiny_dataset.py')])
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=1', '-m', 'basicsr.train', '-opt',
        os.path.join(REPO, 'options',
                     'train_metaf2n_tiny.yml'), '--launcher', 'pytorch', '--force_yml', 'name=gpu_check_torchrun',
        'train:total_iter=2', f'num_gpu={int(device.type == "cuda")}', 'val=~', 'logger:save_checkpoint_freq=2'
    ]
    start = time.perf_counter()
    code = subprocess.call(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return code, time.perf_counter() - start


def main(argv=None):
    import torch

    from metaf2n_plugin.cli import parser_from_doc
    from metaf2n_plugin.models.precision import cpu_description

    parser = parser_from_doc(__doc__)
    parser.add_argument('--device', default='cuda', help='cuda (default) or cpu, for a dry run')
    parser.add_argument('--blocks', type=int, default=23, help='RRDB blocks of the meta-iteration (23: x4plus)')
    parser.add_argument('--repeats', type=int, default=3, help='timed meta-iterations after a warm-up (3)')
    parser.add_argument('--tasks', type=int, default=4, help='tasks per meta-iteration (4: the paper)')
    parser.add_argument('--photo-side', type=int, default=128, help='LQ side of the inference photo (128)')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('bench/gpu_check.sh: no CUDA device here; nothing was run.')
        return 2
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_description()
    print(f'bench/gpu_check.py on {name}, torch {torch.__version__}', flush=True)
    seconds, peak = meta_iteration(device, args.blocks, args.repeats, args.tasks)
    rows = [
        f'| meta{args.tasks}: {args.tasks}-task meta-iteration, RRDBNet-{args.blocks}, paper losses + SSG | '
        f'{seconds:.2f} s/it | '
        f'peak {peak:.2f} GiB |'
    ]
    half, results, between = inference(device, args.photo_side, args.blocks)
    for precision, (took, psnr) in results.items():
        rows.append(f'| infer: grace_hopper {args.photo_side}² LQ, x4plus + MaskNet, {precision} | '
                    f'{took:.2f} s/photo | PSNR-Y {psnr:.2f} dB |')
    rows.append(f'| infer: {half} against fp32 output | | PSNR {between:.1f} dB |')
    code, took = torchrun(device)
    rows.append(f'| torchrun, 1 process, {"NCCL" if device.type == "cuda" else "gloo"}, 2 iterations | {took:.1f} s | '
                f'exit status {code} |')
    print('| check | time | result |\n|---|---:|---|\n' + '\n'.join(rows))
    return 1 if code else 0


if __name__ == '__main__':
    sys.exit(main())

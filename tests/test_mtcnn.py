"""The mtcnn face source: its box handling against naive loops, its networks against the transposed-image layout of
the original weights, and its faces on the built-in photos with facenet-pytorch's real weights (read from the wheel,
fetched with ``pip download`` when missing)."""
import argparse
import copy
import io
import re
import zipfile

import cv2
import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torchvision.ops import nms

from metaf2n_plugin.faces import FacePairExtractor, builtin_photo
from metaf2n_plugin.faces.mtcnn import MTCNNDetector, nms_min, pyramid_scales, regress, square
from metaf2n_plugin.package_weights import load_member_state, locate_wheel
from tolerances import chain_bound, network_steps

PHOTOS = ('astronaut', 'grace_hopper')


@pytest.fixture(scope='module')
def wheel():
    return locate_wheel('facenet-pytorch', download=True)


@pytest.fixture(scope='module')
def detector(wheel):
    return MTCNNDetector(weights=wheel)


def test_nms_min_keeps_what_a_naive_loop_keeps():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        corner = torch.rand(40, 2, generator=generator, dtype=torch.float64) * 100
        boxes = torch.cat([corner, corner + 5 + torch.rand(40, 2, generator=generator, dtype=torch.float64) * 40], 1)
        scores = torch.rand(40, generator=generator, dtype=torch.float64)
        kept = []
        for i in sorted(range(40), key=lambda i: -scores[i].item()):
            a = boxes[i].tolist()
            suppressed = False
            for j in kept:
                b = boxes[j].tolist()
                width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
                height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
                smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
                suppressed = suppressed or width * height > 0.7 * smaller
            if not suppressed:
                kept.append(i)
        assert nms_min(boxes, scores, 0.7).tolist() == kept
        assert 1 < len(kept) < 40  # the draw exercises both outcomes


def test_a_box_inside_another_is_suppressed_in_min_mode_though_its_iou_is_small():
    boxes = torch.tensor([[0.0, 0.0, 100.0, 100.0], [10.0, 10.0, 30.0, 30.0], [200.0, 0.0, 220.0, 20.0]])
    scores = torch.tensor([0.9, 0.95, 0.8])
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 2]  # IoU of 0 and 1: 0.04
    assert nms_min(boxes, scores, 0.7).tolist() == [1, 2]  # 1 lies inside 0: overlap 1 of the smaller area


def test_boxes_move_by_offsets_times_their_size_and_square_about_their_centre():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 40.0]])  # 40 wide, 20 high
    moved = regress(boxes, torch.tensor([[0.1, -0.5, 0.25, 1.0]]))
    assert moved.tolist() == [[14.0, 10.0, 60.0, 60.0]]
    assert square(boxes).tolist() == [[10.0, 10.0, 50.0, 50.0]]
    assert square(torch.tensor([[0.0, 0.0, 4.0, 10.0]])).tolist() == [[-3.0, 0.0, 7.0, 10.0]]


def test_the_pyramid_starts_at_12_over_min_face_and_stops_before_a_short_side_under_12():
    scales = pyramid_scales(100, 300, 20, 0.709)
    assert scales == pytest.approx([0.6 * 0.709**k for k in range(5)])  # 100 * 0.6 * 0.709**4 = 15.2, ** 5 = 10.8
    assert pyramid_scales(19, 300, 20, 0.709) == []


def transposed_reference(state, x, convs, denses, heads):
    """The network the weights were trained as: on the transposed image, with transposed kernels, the features
    flattened in (H, W, C) order of that transposed map. ``convs``: (name, max pool kernel and stride or None)."""

    def prelu(y, name):
        slope = state[name + '.weight'].view(1, -1, *[1] * (y.dim() - 2))
        return y.clamp(min=0) + slope * y.clamp(max=0)

    y = x.transpose(2, 3)
    for i, (name, pool) in enumerate(convs, 1):
        y = prelu(F.conv2d(y, state[name + '.weight'].transpose(2, 3), state[name + '.bias']), f'prelu{i}')
        if pool:
            y = F.max_pool2d(y, *pool, ceil_mode=True)
    y = y.permute(0, 2, 3, 1).reshape(len(x), -1)
    for i, name in enumerate(denses, len(convs) + 1):
        y = prelu(y @ state[name + '.weight'].T + state[name + '.bias'], f'prelu{i}')
    outputs = [y @ state[name + '.weight'].T + state[name + '.bias'] for name in heads]
    outputs[0] = outputs[0].exp()[:, 1] / outputs[0].exp().sum(1)
    return outputs


# name: (crop size, (convolution, its max pool's kernel and stride or None), dense layers, heads)
LAYOUTS = {
    'rnet': (24, [('conv1', (3, 2)), ('conv2', (3, 2)), ('conv3', None)], ['dense4'], ['dense5_1', 'dense5_2']),
    'onet': (48, [('conv1', (3, 2)), ('conv2', (3, 2)), ('conv3', (2, 2)),
                  ('conv4', None)], ['dense5'], ['dense6_1', 'dense6_2', 'dense6_3']),
}


@pytest.mark.parametrize('name', LAYOUTS)
def test_rnet_and_onet_equal_the_transposed_image_network_of_the_weights(detector, wheel, name):
    size, convs, denses, heads = LAYOUTS[name]
    state = {k: v.double() for k, v in load_member_state(wheel, f'facenet_pytorch/data/{name}.pt').items()}
    net = copy.deepcopy(getattr(detector, name)).double()
    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        outputs = net(x)
    bound = 2 * chain_bound(torch.float64, *network_steps(net, x))  # two orders of the same sums
    for output, expected in zip(outputs, transposed_reference(state, x, convs, denses, heads)):
        torch.testing.assert_close(output, expected, rtol=0, atol=bound)


# Mean landmark error against builtin_faces.json, measured at full size: astronaut 0.97 px, Grace Hopper 4.21 px
# (facenet-pytorch's own code, run on these photos: 1.62 px and 4.28 px). Grace Hopper's head is turned: MTCNN puts
# all five points 2.5-4.5 px to the image-right of the hand-measured ones (eye distance 82 px). Bounds: about 1.5 x.
FULL_SIZE_ERROR = {'astronaut': 1.5, 'grace_hopper': 6.0}


@pytest.mark.parametrize('name', PHOTOS)
def test_one_face_per_built_in_photo_with_landmarks_near_the_hand_measured(detector, name):
    image, (truth, ) = builtin_photo(name)
    faces = detector(image)
    assert len(faces) == 1
    face = faces[0]
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float64
    assert face.box.shape == (4, ) and face.box.dtype == np.float64 and isinstance(face.score, float)
    assert face.score > 0.99
    assert np.linalg.norm(face.landmarks - truth.landmarks, axis=1).mean() < FULL_SIZE_ERROR[name]
    x0, y0, x1, y1 = face.box
    assert x0 < truth.landmarks[:, 0].min() and truth.landmarks[:, 0].max() < x1
    assert y0 < truth.landmarks[:, 1].min() and truth.landmarks[:, 1].max() < y1


# MTCNN box width at full size: astronaut 86.3 px, Grace Hopper 171.1 px. Shrunk so that the box is w px wide, the face
# was found down to w = 10 (astronaut, eye distance 5.1 px; missed at w = 9) and w = 9 (Grace Hopper, eye distance
# 4.3 px; missed at w = 8), with a mean landmark error of at most 0.07 eye distances at w >= 20, 0.14 below. Min face
# 20 is the size of P-Net's window, and MTCNN's box is tighter than the window it came from.
FULL_SIZE_WIDTH = {'astronaut': 86.3, 'grace_hopper': 171.1}


@pytest.mark.parametrize('width', [60, 30, 20, 12])
@pytest.mark.parametrize('name', PHOTOS)
def test_small_faces_are_found_down_to_a_12_px_box(detector, name, width):
    image, (truth, ) = builtin_photo(name)
    height_full, width_full = image.shape[:2]
    size = (round(width_full * width / FULL_SIZE_WIDTH[name]), round(height_full * width / FULL_SIZE_WIDTH[name]))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    # pixel centres at integers: x -> (x + 0.5) * factor - 0.5
    landmarks = (truth.landmarks + 0.5) * [size[0] / width_full, size[1] / height_full] - 0.5
    faces = detector(small)
    assert len(faces) == 1
    assert abs(faces[0].box[2] - faces[0].box[0] - width) < 0.15 * width
    eye_distance = np.linalg.norm(landmarks[1] - landmarks[0])
    assert np.linalg.norm(faces[0].landmarks - landmarks, axis=1).mean() < 0.2 * eye_distance


def test_no_face_in_a_blank_or_a_noise_image(detector):
    assert detector(np.full((200, 300, 3), 0.5, dtype=np.float32)) == []
    noise = np.random.default_rng(0).random((240, 320, 3), dtype=np.float32)
    assert detector(noise) == []
    assert detector(np.zeros((15, 15, 3), dtype=np.float32)) == []  # shorter than min_face: no pyramid at all


def test_two_faces_in_one_photo_come_best_first_each_at_its_place(detector):
    halves, truths = [], []
    for name in PHOTOS:
        image, (truth, ) = builtin_photo(name)
        halves.append(cv2.resize(image, (256, image.shape[0] // 2), interpolation=cv2.INTER_AREA))
        truths.append((truth.landmarks + 0.5) / 2 - 0.5 + [256 * len(truths), 0])
    photo = np.zeros((300, 512, 3), dtype=np.float32)
    photo[:256, :256] = halves[0]
    photo[:, 256:] = halves[1]
    faces = detector(photo)
    assert len(faces) == 2 and faces[0].score >= faces[1].score
    errors = [[np.linalg.norm(face.landmarks - truth, axis=1).mean() for truth in truths] for face in faces]
    assert sorted(np.argmin(errors, 1)) == [0, 1] and np.min(errors, 1).max() < 3.0  # measured: 0.63 and 1.96 px


def test_the_mtcnn_source_is_built_from_options_on_the_device(wheel):
    options = {'source': {'type': 'mtcnn', 'weights': wheel}, 'restorer': 'identity'}
    source = FacePairExtractor.from_options(options, device='meta').source
    assert isinstance(source, MTCNNDetector)
    assert source.device == torch.device('meta') and next(source.onet.parameters()).device == torch.device('meta')


def test_a_wheel_whose_weights_are_broken_or_unsafe_is_named(tmp_path):
    from metaf2n_plugin.errors import WeightsFileError
    from metaf2n_plugin.package_weights import load_member_state

    member = 'facenet_pytorch/data/pnet.pt'
    for name, content in (('nan', {'w': torch.tensor([float('nan')])}), ('code', {'w': argparse.Namespace(x=1)})):
        data = io.BytesIO()
        torch.save(content, data)
        with zipfile.ZipFile(tmp_path / f'{name}.whl', 'w') as archive:
            archive.writestr(member, data.getvalue())
        with pytest.raises(WeightsFileError, match=re.escape(f"{tmp_path / name}.whl:{member}")) as error:
            load_member_state(str(tmp_path / f'{name}.whl'), member)
        assert ('NaN or infinite values in 1 tensor(s) (w)' if name == 'nan' else 'cannot be loaded safely') in \
            str(error.value)

"""Face sources: landmark JSON, precomputed pair folders, and RetinaFace (random weights: plumbing only)."""
import json
import os
import shutil
import urllib.error

import numpy as np
import pytest
import torch

from metaf2n_plugin.faces import (Face, FacePair, FacePairExtractor, IdentityRestorer, LandmarkSource, PairFolderSource,
                                  RetinaFaceDetector, face_template, write_pairs)
from metaf2n_plugin.faces.detection import FACEXLIB_RELEASE, build_retinaface

LANDMARKS = (face_template(64) + 10).round(2).tolist()


def test_folder_json_lists_faces_by_file_name(tmp_path):
    table = {
        'a.png': {
            'faces': [{
                'landmarks': LANDMARKS,
                'box': [1, 2, 80, 90],
                'score': 0.95
            }]
        },
        'b.png': {
            'faces': []
        }
    }
    (tmp_path / 'faces.json').write_text(json.dumps(table))
    source = LandmarkSource(tmp_path / 'faces.json')
    (face, ) = source(None, '/photos/a.png')
    np.testing.assert_array_equal(face.landmarks, LANDMARKS)
    np.testing.assert_array_equal(face.box, [1, 2, 80, 90])
    assert face.score == 0.95 and face.to_json() == table['a.png']['faces'][0]
    assert source(None, 'b.png') == []
    with pytest.raises(ValueError, match=r"faces.json' has no entry for image 'c.png'; add \"c.png\""):
        source(None, 'c.png')


def test_sidecar_json_next_to_the_image(tmp_path):
    (tmp_path / 'c.json').write_text(json.dumps({'faces': [{'landmarks': LANDMARKS}]}))
    (face, ) = LandmarkSource()(None, str(tmp_path / 'c.png'))
    assert face.box is None and face.score is None
    with pytest.raises(FileNotFoundError, match=r"landmark file '.*d.json' does not exist"):
        LandmarkSource()(None, str(tmp_path / 'd.png'))


@pytest.mark.parametrize('content, message', [
    ('{"a.png": {"faces": [{"landmarks": [[1, 2], [3, 4]]}]}}', r"'a.png', face 0: \"landmarks\" must be 5"),
    ('{"a.png": {"faces": [{"landmarks": %s, "box": [1, 2]}]}}' % LANDMARKS, r'face 0: "box" must be 4'),
    ('{"a.png": {"faces": [{"box": [1, 2, 3, 4]}]}}', r"'a.png', face 0: expected \{\"landmarks\""),
    ('{"a.png": [1, 2]}', r"'a.png': expected \{\"faces\": \[...\]\}"),
    ('{"a.png": ', 'is not valid JSON'),
])
def test_malformed_landmarks_name_the_file_image_and_face(tmp_path, content, message):
    (tmp_path / 'faces.json').write_text(content)
    with pytest.raises(ValueError, match=message):
        LandmarkSource(tmp_path / 'faces.json')(None, 'a.png')


def test_landmarks_source_needs_the_image_path():
    with pytest.raises(ValueError, match='needs the image path'):
        LandmarkSource()(None, None)


def make_pair(value, h, w, scale=4):
    mask = np.zeros((scale * h, scale * w), bool)
    mask[1:, 2:] = True
    return FacePair(np.full((h, w, 3), value, np.float32), np.full((scale * h, scale * w, 3), value, np.float32), mask)


def test_pair_folders_round_trip_and_keep_images_apart(tmp_path):
    write_pairs(tmp_path, 'img1', [make_pair(0.2, 10, 12), make_pair(0.4, 7, 5)])
    write_pairs(tmp_path, 'img10', [make_pair(0.9, 6, 6)])
    source = PairFolderSource(tmp_path)
    pairs = source.pairs('elsewhere/img1.jpg', scale=4)
    assert [p.lq.shape for p in pairs] == [(10, 12, 3), (7, 5, 3)]
    assert abs(pairs[1].hq.mean() - 0.4) < 1 / 255
    np.testing.assert_array_equal(pairs[0].mask, make_pair(0.2, 10, 12).mask)
    assert len(source.pairs('img10.png', scale=4)) == 1 and source.pairs('img2.png', scale=4) == []
    # Re-writing an image replaces its pairs; none of an earlier run survive.
    write_pairs(tmp_path, 'img1', [make_pair(0.6, 8, 8)])
    assert sorted(os.listdir(tmp_path / 'Face_HQ')) == ['img10_0.png', 'img1_0.png']
    assert not [n for n in os.listdir(tmp_path / 'Face_LQ') if n.endswith('.tmp')]


def test_pair_folders_without_masks_count_every_pixel_valid(tmp_path):
    write_pairs(tmp_path, 'a', [make_pair(0.5, 4, 4)])
    for name in os.listdir(tmp_path / 'Face_Mask'):
        os.remove(tmp_path / 'Face_Mask' / name)
    (pair, ) = PairFolderSource(tmp_path).pairs('a.png', scale=4)
    assert pair.mask.all()


def test_pair_folders_check_the_scale(tmp_path):
    write_pairs(tmp_path, 'a', [make_pair(0.5, 4, 4)])
    with pytest.raises(ValueError, match=r"Face_HQ/a_0.png' is 16x16, but '.*Face_LQ/a_0.png' is 4x4: at scale 2"):
        PairFolderSource(tmp_path).pairs('a.png', scale=2)
    with pytest.raises(FileNotFoundError, match='must hold the folders Face_LQ/ and Face_HQ/'):
        PairFolderSource(tmp_path / 'nothing')


def test_extractor_with_the_pairs_source_needs_no_restorer(tmp_path):
    write_pairs(tmp_path, 'a', [make_pair(0.5, 4, 4)])
    extractor = FacePairExtractor.from_options({'scale': 4, 'source': {'type': 'pairs', 'root': str(tmp_path)}})
    assert extractor.restorer is None
    assert len(extractor(np.zeros((20, 20, 3), np.float32), image_path='a.png')) == 1
    with pytest.raises(ValueError, match="unknown face source type 'haar'; choose one of"):
        FacePairExtractor.from_options({'source': 'haar'})


@pytest.fixture(scope='module')
def retinaface_weights(tmp_path_factory):
    """A random mobile0.25 RetinaFace whose class head calls every large-anchor prior a face (score 0.9997)."""
    torch.manual_seed(0)
    state = build_retinaface('retinaface_mobile0.25', 'cpu').state_dict()
    for level in range(3):
        state[f'ClassHead.{level}.conv1x1.weight'].zero_()
        state[f'ClassHead.{level}.conv1x1.bias'].copy_(torch.tensor([-4.0, 4.0] * 2 if level == 2 else [4.0, -4.0] * 2))
    folder = tmp_path_factory.mktemp('weights')
    torch.save({f'module.{k}': v for k, v in state.items()}, folder / 'detection_mobilenet0.25_Final.pth')
    return folder


def test_retinaface_plumbing_with_random_weights(retinaface_weights):
    detector = RetinaFaceDetector('retinaface_mobile0.25', weights=retinaface_weights, device='cpu')
    image = np.random.default_rng(0).random((96, 128, 3), dtype=np.float32)
    extractor = FacePairExtractor(detector, IdentityRestorer(32), scale=2)
    pairs = extractor(image)
    assert len(pairs) >= 1
    for pair in pairs:
        face = pair.face
        assert face.landmarks.shape == (5, 2) and face.box.shape == (4, ) and face.score > 0.9
        x0, y0, x1, y1 = pair.box  # the detector's box, clipped to the image
        assert (x0, y0) == (max(0, int(np.floor(face.box[0]))), max(0, int(np.floor(face.box[1]))))
        assert x1 <= 128 and y1 <= 96 and pair.hq.shape[:2] == (2 * (y1 - y0), 2 * (x1 - x0))
    # The same network, told that nothing is a face: an image without faces, no exception.
    detector.net.ClassHead[2].conv1x1.bias.data = torch.tensor([4.0, -4.0] * 2)
    assert extractor(image) == []


def test_retinaface_sees_large_images_shrunk_and_reports_full_size_coordinates(retinaface_weights):
    detector = RetinaFaceDetector('retinaface_mobile0.25', weights=retinaface_weights, device='cpu')
    seen = []

    def fake_detect(bgr, conf_threshold, nms_threshold):
        seen.append((bgr.shape, bgr[0, 0].tolist(), conf_threshold))
        return np.array([[100, 50, 200, 150, 0.99] + [110, 60] * 5], np.float32)

    detector.net.detect_faces = fake_detect
    image = np.zeros((400, 1600, 3), np.float32)
    image[..., 0] = 1.0  # pure red: BGR (0, 0, 255) for RetinaFace
    (face, ) = detector(image)
    assert seen == [((250, 1000, 3), [0.0, 0.0, 255.0], 0.9)]
    np.testing.assert_allclose(face.box, [160, 80, 320, 240])
    np.testing.assert_allclose(face.landmarks, [[176, 96]] * 5)
    detector(image[:, :1500])  # long side 1500: not shrunk
    assert seen[-1][0] == (400, 1500, 3)


def test_missing_detector_weights_name_file_url_and_place(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        RetinaFaceDetector(weights=tmp_path)
    message = str(err.value)
    assert 'detection_Resnet50_Final.pth not found' in message
    assert 'https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth' in message
    assert f"put it at '{tmp_path / 'detection_Resnet50_Final.pth'}'" in message and 'download: true' in message


def test_download_goes_to_the_weights_folder_or_explains_why_not(retinaface_weights, tmp_path, monkeypatch):
    import basicsr.utils.download_util as download_util
    calls = []

    def fake_download(url, model_dir, file_name):
        calls.append((url, model_dir, file_name))
        shutil.copy(retinaface_weights / file_name, os.path.join(model_dir, file_name))
        return os.path.join(model_dir, file_name)

    def offline(url, model_dir, file_name):
        raise urllib.error.URLError('no network')

    monkeypatch.setattr(download_util, 'load_file_from_url', fake_download)
    RetinaFaceDetector('retinaface_mobile0.25', weights=tmp_path, download=True)
    assert calls == [(FACEXLIB_RELEASE + 'detection_mobilenet0.25_Final.pth', str(tmp_path),
                      'detection_mobilenet0.25_Final.pth')]
    monkeypatch.setattr(download_util, 'load_file_from_url', offline)
    with pytest.raises(
            FileNotFoundError,
            match=r'detection_Resnet50_Final.pth not found .* Downloading it '
            'failed: <urlopen error no network>'):
        RetinaFaceDetector('retinaface_resnet50', weights=tmp_path, download=True)


def test_face_json_round_trip():
    face = Face(np.array(LANDMARKS), np.array([1.0, 2.0, 3.0, 4.0]), 0.5)
    again = Face.from_json(json.loads(json.dumps(face.to_json())), 'here')
    np.testing.assert_array_equal(again.landmarks, face.landmarks)
    np.testing.assert_array_equal(again.box, face.box)
    assert again.score == 0.5


def test_faces_given_to_an_extractor_without_restorer_are_refused_by_name(tmp_path):
    from metaf2n_plugin.faces import Face, face_template
    extractor = FacePairExtractor.from_options({'scale': 4, 'source': {'type': 'pairs', 'root': str(tmp_path)}})
    with pytest.raises(ValueError, match="'a.png': its faces need a restorer"):
        extractor(np.zeros((64, 64, 3), np.float32), image_path='a.png', faces=[Face(face_template(64) / 2)])

"""A fixed pool of degraded meta-training tasks, drawn once and kept in a file (docs/results.md, "The task pool and
the frozen body")."""
import hashlib
import json
import os

import torch
from basicsr.utils import get_root_logger
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data
from torch.utils.data import default_collate
from tqdm import tqdm

from metaf2n_plugin.atomic_write import atomic_file
from metaf2n_plugin.checkpoints import read_checkpoint
from metaf2n_plugin.data.degradation import degradation_options
from metaf2n_plugin.data.global_seed import seeded_globally
from metaf2n_plugin.data.metaf2n_task_dataset import MetaF2NTaskDataset
from metaf2n_plugin.data.task_degradation import DegradedTasks, TaskDegrader

# MetaF2NTaskDataset's keys that shape a task (its degradation keys are added from degradation_options)
TASK_KEYS = ('scale', 'faces_per_task', 'patches_per_task', 'face_size', 'face_patch_size', 'background_size',
             'background_patch_size', 'face_patch_tries', 'face_patch_min_log_gradient', 'use_hflip')
# the tasks' fields a pool keeps: DegradedTasks' but the inner target, which the model's face restorer makes
POOL_FIELDS = tuple(name for name in DegradedTasks.__dataclass_fields__ if name != 'face_hq_patches')


@DATASET_REGISTRY.register()
class MetaF2NTaskPoolDataset(data.Dataset):
    """``pool_size`` tasks of :class:`MetaF2NTaskDataset`, degraded once (on the CPU, seeded by ``pool_seed``) and
    kept in ``pool_path``; each epoch visits them all in BasicSR's order.

    Options: every key of ``MetaF2NTaskDataset`` plus ``pool_path`` (required), ``pool_size`` (256), ``pool_seed`` (0).
    A pool file whose settings (data files, task sizes, degradation, size, seed) differ from these options is
    refused, naming each difference; it is never silently reused. The face patches are chosen by the GT's detail
    (a pool has no face restorer); the model restores the pool's LQ faces when it has a restorer.

    Item: ``DegradedTasks``' fields for one task (no leading T; ``face_hq_patches`` left to the model), and
    ``pool_index`` (int), ``pool_path`` (str), ``pool_digest`` (str, SHA-256 of the settings).
    """

    def __init__(self, opt):
        super().__init__()
        if not opt.get('pool_path'):
            raise ValueError('MetaF2NTaskPoolDataset needs pool_path: the file that keeps the pool (e.g. '
                             'datasets/pools/<name>.pth; made on first use)')
        self.path = opt['pool_path']
        self.tasks = MetaF2NTaskDataset(opt)
        self.settings = pool_settings(opt, self.tasks)
        self.digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()
        if os.path.isfile(self.path):
            pool = read_checkpoint(self.path, 'pool_path')
            check_settings(pool.get('settings', {}), self.settings, self.path)
        else:
            pool = build_pool(self.tasks, self.settings)
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with atomic_file(self.path) as f:
                torch.save(pool, f)
            get_root_logger().info(f'task pool: {len(pool["face_lq"])} tasks written to {self.path}')
        self.pool = {name: pool[name] for name in POOL_FIELDS}

    def __len__(self):
        return self.settings['pool_size']

    def __getitem__(self, index):
        item = {name: values[index] for name, values in self.pool.items()}
        item.update(pool_index=index, pool_path=self.path, pool_digest=self.digest)
        return item


def pool_settings(opt, tasks):
    """What a pool's content depends on: the data files (names and sizes), the task keys, the degradation, the
    pool's size and seed; JSON-serialisable."""
    files = {
        'faces': [[os.path.basename(p), os.path.getsize(p)] for p in tasks.face_paths],
        'backgrounds': [[os.path.basename(p), os.path.getsize(p)] for p in tasks.background_paths]
    }
    return json.loads(
        json.dumps({
            'files': files,
            'task': {
                key: opt.get(key, getattr(tasks, key, None))
                for key in TASK_KEYS
            },
            'degradation': degradation_options(opt),
            'pool_size': int(opt.get('pool_size', 256)),
            'pool_seed': int(opt.get('pool_seed', 0))
        }))


def check_settings(found, expected, path):
    """ValueError naming every setting in which the pool file ``path`` differs from the run's options."""
    differences = []
    for group in sorted(set(found) | set(expected)):
        old, new = found.get(group), expected.get(group)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += [
                f'{group}.{key}: {old.get(key)!r} in the file, {new.get(key)!r} in the options'
                for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)
            ]
        elif old != new:
            differences.append(f'{group}: {old!r} in the file, {new!r} in the options')
    if differences:
        raise ValueError(f'task pool {path!r} was drawn with other settings; it is never reused for another run. '
                         f'Delete it or set another pool_path. Differences: ' + '; '.join(differences))


def build_pool(tasks, settings):
    """Draw and degrade ``settings['pool_size']`` tasks on the CPU from a local seed (the global random state is
    left as it was): ``{field: (N, ...) tensor, 'settings': settings}``."""
    degrader, parts = TaskDegrader(settings['task']['scale']), {name: [] for name in POOL_FIELDS}
    with seeded_globally(settings['pool_seed']):
        for i in tqdm(range(settings['pool_size']), desc='task pool', unit='task'):
            degraded = degrader(default_collate([tasks[i % len(tasks)]]), 'cpu')
            for name in POOL_FIELDS:
                parts[name].append(getattr(degraded, name)[0])
    return {**{name: torch.stack(values) for name, values in parts.items()}, 'settings': settings}

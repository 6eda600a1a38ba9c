"""How docs/results/qm9_auto_vs_dbb4d30_cpu.json was made (kept as it ran; not part of the package).

    git worktree add /tmp/old dbb4d30
    mkdir -p /tmp/oldpkg && cp -r /tmp/old/segnn /tmp/oldpkg/segnn_old
    grep -rl "segnn\\." /tmp/oldpkg/segnn_old | xargs sed -i "s/\\bfrom segnn\\./from segnn_old./g; s/\\bimport segnn\\./import segnn_old./g; s/from segnn import/from segnn_old import/g"
    .venv/bin/python docs/results/qm9_auto_vs_dbb4d30_cpu.py 30
"""
import json, statistics, sys, time
sys.path.insert(0, "/tmp/oldpkg")
import torch
torch.set_num_threads(2)
import segnn_old.config as old_config, segnn_old.train.tasks as old_tasks
from segnn_old.models import compile_layers
from segnn_old.train.trainer import make_optimizer as old_opt
import segnn.config as new_config, segnn.train.tasks as new_tasks
from segnn.models import use_backend
from segnn.train.trainer import make_optimizer

over = ["data.subset={train: 1024, val: 1, test: 1}", "data.root=/work/main/data/qm9"]
def setup(config_module, tasks_module, path):
    config = config_module.load_config(path, over)
    torch.manual_seed(0)
    task = tasks_module.make_task(config)
    batch = task.collate([task.datasets["train"][i] for i in range(128)])
    torch.manual_seed(0)
    model = task.build_model()
    return config, task, batch, model

_, old_task, old_batch, old_model = setup(old_config, old_tasks, "/tmp/old/configs/qm9.yaml")
assert old_task.config.model.edge_frame
compile_layers(old_model)
_, new_task, new_batch, new_model = setup(new_config, new_tasks, "/work/main/configs/qm9.yaml")
backend = use_backend(new_model, "auto", compile=True)
print("new backend:", backend)
def stepper(task, model, batch, opt):
    optimizer = opt(model.parameters(), lr=1e-3)
    def step():
        loss = task.loss(model, batch); optimizer.zero_grad(set_to_none=True); loss.backward(); optimizer.step()
    return step
steps = {"old_edge_frame_compiled": stepper(old_task, old_model, old_batch, old_opt),
         "new_auto": stepper(new_task, new_model, new_batch, make_optimizer)}
first = {}
for name, step in steps.items():
    t = time.perf_counter(); step(); first[name] = time.perf_counter() - t
    for _ in range(4): step()
times = {name: [] for name in steps}
for turn in range(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
    for name, step in steps.items():
        t = time.perf_counter(); step(); times[name].append(time.perf_counter() - t)
result = {"first_step_s": first, "turns": len(times["new_auto"]), "threads": 2}
for name, values in times.items():
    result[f"{name}_train_step_ms"] = 1000 * statistics.median(values)
    result[f"{name}_train_molecules_per_s"] = 128 / statistics.median(values)
ratios = sorted(o / n for o, n in zip(times["old_edge_frame_compiled"], times["new_auto"]))
result["speedup_new_over_old_per_turn_quartiles"] = [ratios[len(ratios) // 4], statistics.median(ratios), ratios[3 * len(ratios) // 4]]
result["new_faster_in_turns"] = sum(r > 1 for r in ratios)
print(json.dumps(result, indent=1))
json.dump(result, open("/tmp/compare.json", "w"), indent=1)

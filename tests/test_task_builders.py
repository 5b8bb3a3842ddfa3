"""Task builders: hierarchy, one-vs-rest, attribute and unit-square task libraries.

Inputs are built so that each example's row says which example it is (``inputs[i, 0] == i``):
a task's rows then tell exactly which examples it holds, and each test checks them against
its labels. The last tests embed a hierarchy library end to end.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from sklearn_task2vec import FisherTaskEmbedder, task_library, tasks
from sklearn_task2vec.task_library import (
    RelabelledSubset,
    TaskLibrary,
    attribute_tasks,
    hierarchy_tasks,
    one_vs_rest_tasks,
    taxonomic_distance,
    unit_square_tasks,
)
from sklearn_task2vec.tasks import is_task_sequence

# A taxonomy with leaves at different depths and single-leaf nodes:
#   all -> clothes -> tops -> 0 2 4 6
#                  -> bottoms -> 1
#       -> footwear -> 5 7 9
#       -> bags -> 8
#   (3 is a label of the data but not in the taxonomy.)
HIERARCHY = {
    "all": ["clothes", "footwear", "bags"],
    "clothes": ["tops", "bottoms"],
    "tops": [0, 2, 4, 6],
    "bottoms": [1],
    "footwear": [5, 7, 9],
    "bags": [8],
}


def indexed_data(n_per_class=6, n_classes=10):
    """``(inputs, labels)``: ``n_per_class`` examples of each class; ``inputs[i, 0] == i``."""
    labels = np.repeat(np.arange(n_classes), n_per_class)
    inputs = np.stack([np.arange(len(labels)), labels], axis=1).astype(np.float64)
    return inputs, labels


def rows(task):
    """The indices of the examples a task holds, read from its inputs."""
    return task[0][:, 0].astype(int)


# ----------------------------------------------------------------- hierarchy_tasks
def test_one_task_per_internal_node_with_two_leaves_in_depth_first_order():
    library = hierarchy_tasks(*indexed_data(), HIERARCHY)
    # bottoms and bags have one leaf each: no task.
    assert library.names == ["all", "clothes", "tops", "footwear"]
    assert [facts["depth"] for facts in library.info] == [0, 1, 2, 1]
    assert [facts["path"] for facts in library.info] == [
        ("all",),
        ("all", "clothes"),
        ("all", "clothes", "tops"),
        ("all", "footwear"),
    ]
    assert library.info[1]["leaves"] == (0, 2, 4, 6, 1)


def test_leaf_labels_keep_each_example_and_its_own_class():
    inputs, labels = indexed_data()
    library = hierarchy_tasks(inputs, labels, HIERARCHY)
    for task, facts in zip(library, library.info):
        task_labels = task[1]
        expected = np.flatnonzero(np.isin(labels, facts["leaves"]))
        np.testing.assert_array_equal(rows(task), expected)
        np.testing.assert_array_equal(task_labels, labels[expected])
        assert facts["classes"] == facts["leaves"]
    # Class 3 is not in the taxonomy: in no task, not even the root's.
    assert 3 not in library[0][1]


def test_child_labels_name_the_subtree_of_each_example():
    inputs, labels = indexed_data()
    library = hierarchy_tasks(inputs, labels, HIERARCHY, label_by="child")
    # tops, footwear and clothes have 2+ children; tops' children are leaves.
    assert library.names == ["all", "clothes", "tops", "footwear"]
    root_labels = library[0][1]
    expected = {0: "clothes", 1: "clothes", 2: "clothes", 4: "clothes", 6: "clothes"}
    expected.update({5: "footwear", 7: "footwear", 9: "footwear", 8: "bags"})
    assert root_labels.tolist() == [expected[label] for label in labels[rows(library[0])]]
    np.testing.assert_array_equal(
        library[1][1], np.where(np.isin(labels[rows(library[1])], [1]), "bottoms", "tops")
    )
    assert library.info[0]["classes"] == ("clothes", "footwear", "bags")


def test_child_labels_of_mixed_types_are_not_turned_into_strings():
    inputs, labels = indexed_data(n_classes=3)
    library = hierarchy_tasks(inputs, labels, {"root": ["pair", 2], "pair": [0, 1]}, label_by="child")
    assert library.names == ["root", "pair"]
    assert library[0][1].dtype == object
    assert set(library[0][1].tolist()) == {"pair", 2}


def test_node_with_one_child_gives_no_task_by_child():
    inputs, labels = indexed_data()
    hierarchy = {"only": ["group"], "group": [0, 1]}
    assert hierarchy_tasks(inputs, labels, hierarchy).names == ["only", "group"]
    assert hierarchy_tasks(inputs, labels, hierarchy, label_by="child").names == ["group"]


def test_min_examples_drops_small_nodes_and_refuses_an_empty_library():
    inputs, labels = indexed_data(n_per_class=6)
    # all: 9 classes x 6; clothes: 30; tops: 24; footwear: 18.
    assert hierarchy_tasks(inputs, labels, HIERARCHY, min_examples=19).names == ["all", "clothes", "tops"]
    assert hierarchy_tasks(inputs, labels, HIERARCHY, min_examples=18).names[-1] == "footwear"
    with pytest.raises(ValueError, match="no node of the hierarchy gives a task.*min_examples=55"):
        hierarchy_tasks(inputs, labels, HIERARCHY, min_examples=55)
    with pytest.raises(ValueError, match="min_examples=30 is above max_examples=20"):
        hierarchy_tasks(inputs, labels, HIERARCHY, min_examples=30, max_examples=20)


def test_max_examples_is_a_stratified_seeded_subset():
    # Unbalanced classes: 40 of 0, 20 of 2, 10 of 4, 2 of 6.
    labels = np.repeat([0, 2, 4, 6], [40, 20, 10, 2])
    inputs = np.arange(len(labels), dtype=float)[:, None]
    hierarchy = {"tops": [0, 2, 4, 6]}
    library = hierarchy_tasks(inputs, labels, hierarchy, max_examples=18, random_state=0)
    task_inputs, task_labels = library[0]
    assert len(task_labels) == 18
    kept = task_inputs[:, 0].astype(int)
    assert np.all(np.diff(kept) > 0)  # distinct examples, in their original order
    np.testing.assert_array_equal(task_labels, labels[kept])
    counts = dict(zip(*np.unique(task_labels, return_counts=True)))
    # One of each class first, the other 14 shared in proportion to 39, 19, 9 and 1.
    assert counts[6] >= 1 and set(counts) == {0, 2, 4, 6}
    assert abs(counts[0] - 1 - 14 * 39 / 68) <= 1 and abs(counts[2] - 1 - 14 * 19 / 68) <= 1
    again = hierarchy_tasks(inputs, labels, hierarchy, max_examples=18, random_state=0)
    np.testing.assert_array_equal(again[0][0], task_inputs)
    other = hierarchy_tasks(inputs, labels, hierarchy, max_examples=18, random_state=1)
    assert not np.array_equal(other[0][0], task_inputs)
    uncapped = hierarchy_tasks(inputs, labels, hierarchy, max_examples=72, random_state=0)
    assert len(uncapped[0][1]) == 72


def test_max_examples_below_the_number_of_classes():
    inputs, labels = indexed_data()
    with pytest.raises(ValueError, match="node 'all': max_examples=3 is fewer than its 9 classes"):
        hierarchy_tasks(inputs, labels, HIERARCHY, max_examples=3)
    with pytest.raises(
        ValueError,
        match=r"'max_examples' parameter of hierarchy_tasks must be an int in the range \[2, inf\) or None",
    ):
        hierarchy_tasks(inputs, labels, HIERARCHY, max_examples=1)


def test_tensor_inputs_give_tensor_tasks():
    inputs, labels = indexed_data()
    library = hierarchy_tasks(torch.as_tensor(inputs), torch.as_tensor(labels), HIERARCHY)
    assert isinstance(library[2][0], torch.Tensor)
    np.testing.assert_array_equal(library[2][0][:, 1].numpy(), library[2][1])


def test_dataset_inputs_give_relabelled_subsets_read_by_a_loader():
    inputs, labels = indexed_data()
    # The dataset's own labels are deliberately wrong: the tasks' labels must win.
    dataset = TensorDataset(torch.as_tensor(inputs), torch.full((len(labels),), -1))
    library = hierarchy_tasks(dataset, labels, HIERARCHY, label_by="child")
    assert all(isinstance(task, RelabelledSubset) for task in library)
    root = library[0]
    assert root[0][1] == "clothes" and isinstance(root[0][1], str)
    batches = list(DataLoader(root, batch_size=7))
    examples = torch.cat([x for x, _ in batches])[:, 0].long().numpy()
    loaded_labels = [label for _, batch_labels in batches for label in batch_labels]
    np.testing.assert_array_equal(examples, root.indices)
    assert loaded_labels == root.labels.tolist()
    assert set(loaded_labels) == {"clothes", "footwear", "bags"}


@pytest.mark.parametrize(
    "hierarchy, error, message",
    [
        (
            {"a": ["b", 0], "b": ["c", 1], "c": ["a", 2]},
            ValueError,
            "the hierarchy has a cycle: 'a' -> 'b' -> 'c' -> 'a'",
        ),
        ({"a": ["a", 0, 1]}, ValueError, "the hierarchy has a cycle: 'a' -> 'a'"),
        ({"a": [0, 1], "b": [1, 2]}, ValueError, "1 is a child of both 'a' and 'b'; a hierarchy is a tree"),
        ({"a": [0, 1, 0]}, ValueError, "0 is a child of both 'a' and 'a'"),
        (
            {"a": [0, "1"]},
            ValueError,
            "the hierarchy has leaves that are no example's label: '1'.*int64 values such as 0, 1",
        ),
        ({"a": [0, 1], 2: [3, 4]}, ValueError, "2 is both a parent in the hierarchy and a class label"),
        ({"a": []}, ValueError, "'a' has no children"),
        ({"a": "01"}, TypeError, "the children of 'a' must be a list"),
        ({"a": [[0], 1]}, TypeError, "the children of 'a' must be hashable"),
        ([("a", [0, 1])], TypeError, "hierarchy must be a dict"),
        ({"a": [0], "b": [1]}, ValueError, "no node of the hierarchy gives a task"),
    ],
)
def test_bad_hierarchies(hierarchy, error, message):
    with pytest.raises(error, match="^hierarchy_tasks: " + message):
        hierarchy_tasks(*indexed_data(), hierarchy)


def test_bad_inputs_and_labels():
    inputs, labels = indexed_data()
    with pytest.raises(ValueError, match="^hierarchy_tasks: inputs have 60 examples but labels have 59"):
        hierarchy_tasks(inputs, labels[:-1], HIERARCHY)
    with pytest.raises(ValueError, match="^hierarchy_tasks: labels must be 1-D"):
        hierarchy_tasks(inputs, labels[:, None], HIERARCHY)
    with pytest.raises(ValueError, match="^hierarchy_tasks: inputs must have one row per example"):
        hierarchy_tasks(inputs[:, 0], labels, HIERARCHY)
    with pytest.raises(ValueError, match="^The 'label_by' parameter of hierarchy_tasks must be a str among"):
        hierarchy_tasks(inputs, labels, HIERARCHY, label_by="leaves")
    dataset = TensorDataset(torch.as_tensor(inputs), torch.as_tensor(labels))
    with pytest.raises(TypeError, match="inputs is a DataLoader; pass its dataset"):
        hierarchy_tasks(DataLoader(dataset), labels, HIERARCHY)

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(dataset)

    with pytest.raises(TypeError, match="inputs is an IterableDataset"):
        hierarchy_tasks(Stream(), labels, HIERARCHY)


# ----------------------------------------------------------------- taxonomic distance
def test_taxonomic_distance_between_nodes_and_between_leaves():
    assert taxonomic_distance(HIERARCHY, "tops", "footwear") == 3.0  # tops-clothes-all-footwear
    assert taxonomic_distance(HIERARCHY, "tops", "tops") == 0.0
    assert taxonomic_distance(HIERARCHY, 0, 2) == 2.0
    assert taxonomic_distance(HIERARCHY, 0, 5) == 5.0
    # The paper's D_tax: nearest classes. tops' leaves are 3 deep, footwear's 2: 3 + 2 - 0.
    assert taxonomic_distance(HIERARCHY, "tops", "footwear", between="leaves") == 5.0
    # clothes' leaves are all 3 deep (under tops and bottoms), bags' leaf 8 is 2 deep.
    assert taxonomic_distance(HIERARCHY, "clothes", "bags", between="leaves") == 5.0
    assert taxonomic_distance(HIERARCHY, "clothes", "tops", between="leaves") == 0.0  # nested: shared classes
    assert taxonomic_distance({"a": [0, 1], "b": [2, 3]}, "a", "b") == np.inf  # a forest
    with pytest.raises(ValueError, match="'shoes' is not a node or a leaf"):
        taxonomic_distance(HIERARCHY, "tops", "shoes")
    with pytest.raises(
        ValueError, match="^The 'between' parameter of taxonomic_distance must be a str among"
    ):
        taxonomic_distance(HIERARCHY, "tops", "bags", between="edges")


def test_library_taxonomic_distances_match_the_pairwise_function():
    library = hierarchy_tasks(*indexed_data(), HIERARCHY)
    for between in ["nodes", "leaves"]:
        matrix = library.taxonomic_distances(between)
        expected = [
            [taxonomic_distance(HIERARCHY, a, b, between=between) for b in library.names]
            for a in library.names
        ]
        np.testing.assert_array_equal(matrix, expected)
    np.testing.assert_array_equal(library.taxonomic_distances()[0], [0, 1, 2, 1])
    with pytest.raises(
        ValueError, match="^The 'between' parameter of TaskLibrary.taxonomic_distances must be a str among"
    ):
        library[:1].taxonomic_distances("edges")


# ----------------------------------------------------------------- TaskLibrary
def test_task_library_is_a_task_sequence_that_slices_and_pickles():
    library = hierarchy_tasks(*indexed_data(), HIERARCHY)
    assert isinstance(library, list) and is_task_sequence(library)
    assert len(library.tasks) == 4 and type(library.tasks) is list
    tail = library[2:]
    assert isinstance(tail, TaskLibrary) and tail.names == ["tops", "footwear"]
    assert tail.info[0]["node"] == "tops"
    np.testing.assert_array_equal(tail.taxonomic_distances(), [[0, 3], [3, 0]])
    assert repr(library) == "TaskLibrary(4 tasks: 'all', 'clothes', 'tops', 'footwear')"
    restored = pickle.loads(pickle.dumps(library))
    assert restored.names == library.names and restored.hierarchy == library.hierarchy
    np.testing.assert_array_equal(restored[3][0], library[3][0])


def test_task_library_refuses_mismatched_names_and_distances_without_hierarchy():
    task = indexed_data()
    with pytest.raises(ValueError, match="2 tasks, 1 names and 2 info dicts"):
        TaskLibrary([task, task], ["a"], [{}, {}])
    with pytest.raises(ValueError, match="was not built from a hierarchy"):
        TaskLibrary([task], ["a"]).taxonomic_distances()


# ----------------------------------------------------------------- one_vs_rest_tasks
def test_one_vs_rest_gives_a_binary_task_per_class():
    inputs, labels = indexed_data(n_classes=4)
    text_labels = np.array(["cat", "dog", "eel", "fox"])[labels]
    library = one_vs_rest_tasks(inputs, text_labels)
    assert library.names == ["cat", "dog", "eel", "fox"]
    for name, (_, task_labels) in zip(library.names, library):
        assert len(task_labels) == len(labels)  # every example in every task
        np.testing.assert_array_equal(task_labels, (text_labels == name).astype(int))
    chosen = one_vs_rest_tasks(inputs, text_labels, classes=["fox", "cat"])
    assert chosen.names == ["fox", "cat"] and chosen.info[0] == {"positive": "fox"}
    np.testing.assert_array_equal(chosen[0][1], library[3][1])


def test_one_vs_rest_names_tasks_by_the_datasets_class_names():
    inputs, labels = indexed_data(n_classes=3)
    names = np.array(["T-shirt/top", "Trouser", "Pullover"])  # a Bunch's target_names
    library = one_vs_rest_tasks(inputs, labels, class_names=names)
    assert library.names == ["T-shirt/top", "Trouser", "Pullover"]
    assert library.info[1] == {"positive": 1}  # the label itself stays in info
    np.testing.assert_array_equal(library[1][1], (labels == 1).astype(int))
    picked = one_vs_rest_tasks(inputs, labels, classes=[2, 0], class_names=names)
    assert picked.names == ["Pullover", "T-shirt/top"]
    with pytest.raises(ValueError, match="class_names names the labels 0 .. 1 by position, but labels 2"):
        one_vs_rest_tasks(inputs, labels, class_names=names[:2])


def test_one_vs_rest_cap_keeps_positives_in_proportion():
    inputs, labels = indexed_data(n_per_class=10, n_classes=5)
    library = one_vs_rest_tasks(inputs, labels, max_examples=20, random_state=0)
    for positive, task in zip(library.names, library):
        # 10 of 50 positive; one of each class, then 18 shared: 1 + 18 * 9 / 48 = 4.4 positives.
        assert len(task[1]) == 20 and task[1].sum() == 4
        np.testing.assert_array_equal(task[1], labels[rows(task)] == positive)


def test_one_vs_rest_errors():
    inputs, labels = indexed_data(n_classes=3)
    with pytest.raises(ValueError, match="^one_vs_rest_tasks: classes 7 are no example's label"):
        one_vs_rest_tasks(inputs, labels, classes=[0, 7])
    with pytest.raises(ValueError, match="^one_vs_rest_tasks: labels have a single class"):
        one_vs_rest_tasks(inputs, np.zeros(len(labels)))
    with pytest.raises(ValueError, match="^one_vs_rest_tasks: inputs have 18 examples but labels have 17"):
        one_vs_rest_tasks(inputs, labels[1:])


# ----------------------------------------------------------------- attribute_tasks
def test_attribute_tasks_skip_unknown_values_and_constant_attributes():
    inputs, _ = indexed_data(n_per_class=2, n_classes=3)  # 6 examples
    attributes = pd.DataFrame(
        {
            "red": [1, 0, 1, 0, 1, 0],
            "always": [True] * 6,
            "striped": [1.0, np.nan, 0.0, np.nan, 1.0, 0.0],
        }
    )
    library = attribute_tasks(inputs, attributes)
    assert library.names == ["red", "striped"]  # "always" defines no task
    assert library.info[1] == {"attribute": "striped", "column": 2}
    np.testing.assert_array_equal(library[0][1], [1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(rows(library[1]), [0, 2, 4, 5])  # unknown values left out
    np.testing.assert_array_equal(library[1][1], [1, 0, 1, 0])
    named = attribute_tasks(inputs, attributes.to_numpy(dtype=float), names=["r", "a", "s"])
    assert named.names == ["r", "s"]
    assert attribute_tasks(inputs, attributes.to_numpy(dtype=float)).names == [0, 2]


def test_attribute_tasks_errors():
    inputs, _ = indexed_data(n_per_class=2, n_classes=2)  # 4 examples
    with pytest.raises(ValueError, match="^attribute_tasks: attribute 'b' has the value 2.0"):
        attribute_tasks(inputs, [[0, 1], [1, 2], [0, 0], [1, 1]], names=["a", "b"])
    with pytest.raises(ValueError, match="^attribute_tasks: attributes must be 2-D.*reshape"):
        attribute_tasks(inputs, [0, 1, 0, 1])
    with pytest.raises(
        ValueError, match="^attribute_tasks: inputs have 4 examples but attributes have 3 rows"
    ):
        attribute_tasks(inputs, [[0], [1], [0]])
    with pytest.raises(ValueError, match="^attribute_tasks: 1 names for 2 attributes"):
        attribute_tasks(inputs, np.eye(4)[:, :2], names=["a"])
    with pytest.raises(ValueError, match="^attribute_tasks: attributes must be booleans or 0/1"):
        attribute_tasks(inputs, [["yes"], ["no"], ["yes"], ["no"]])
    with pytest.raises(ValueError, match="^attribute_tasks: no attribute varies"):
        attribute_tasks(inputs, np.ones((4, 3)))


# ----------------------------------------------------------------- unit_square_tasks
def test_unit_square_family_is_the_papers_toy_tasks():
    library = unit_square_tasks(random_state=0)
    assert len(library) == 64
    points = library[0][0]
    assert points.shape == (32 * 32, 2) and points.min() == 0.0 and points.max() == 1.0
    assert not points.flags.writeable and all(task[0] is points for task in library)  # one shared domain
    n_clusters = np.array([facts["n_clusters"] for facts in library.info])
    assert n_clusters.min() >= 3 and n_clusters.max() <= 16 and len(np.unique(n_clusters)) >= 10
    grid = points.reshape(32, 32, 2)
    for (_, labels), facts in zip(library, library.info):
        assert set(labels.tolist()) == {0, 1}
        k = facts["n_clusters"]
        assert len(facts["positive_clusters"]) == k // 2
        # k-means cells of a uniform grid have about equal areas: about k // 2 of k are positive.
        assert abs(labels.mean() - (k // 2) / k) < 0.15
        # Labels follow clusters, not points: most grid neighbours share their label.
        image = labels.reshape(32, 32)
        same = np.concatenate([(image[1:] == image[:-1]).ravel(), (image[:, 1:] == image[:, :-1]).ravel()])
        assert same.mean() > 0.85
    assert np.allclose(grid[0, :, 0], np.linspace(0, 1, 32))


def test_unit_square_is_seeded_and_checks_its_range():
    first = unit_square_tasks(5, grid_size=10, random_state=3)
    again = unit_square_tasks(5, grid_size=10, random_state=3)
    assert first.info == again.info and first.names == again.names
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    assert [
        facts["n_clusters"] for facts in unit_square_tasks(20, n_clusters_range=(4, 4), random_state=0).info
    ] == [4] * 20
    with pytest.raises(ValueError, match="n_clusters_range must be two integers"):
        unit_square_tasks(n_clusters_range=(5, 3))
    with pytest.raises(ValueError, match="n_clusters_range must be two integers"):
        unit_square_tasks(grid_size=3, n_clusters_range=(3, 16))
    with pytest.raises(
        ValueError, match=r"'n_tasks' parameter of unit_square_tasks must be an int in the range \[1, inf\)"
    ):
        unit_square_tasks(0)


# ----------------------------------------------------------------- parameters and import paths
@pytest.mark.parametrize(
    "build, parameter",
    [
        (lambda: hierarchy_tasks(*indexed_data(), HIERARCHY, min_examples=True), "min_examples"),
        (lambda: hierarchy_tasks(*indexed_data(), HIERARCHY, max_examples=True), "max_examples"),
        (lambda: one_vs_rest_tasks(*indexed_data(), max_examples=2.5), "max_examples"),
        (lambda: attribute_tasks(np.zeros((2, 2)), [[0], [1]], names="a"), "names"),
        (lambda: unit_square_tasks(True), "n_tasks"),
        (lambda: unit_square_tasks(grid_size=np.float64(8)), "grid_size"),
        (lambda: hierarchy_tasks("images", np.zeros(6), HIERARCHY), "inputs"),
        (lambda: taxonomic_distance(HIERARCHY, ["tops"], "bags"), "node_a"),
    ],
)
def test_bad_parameters_booleans_included_are_refused_by_name(build, parameter):
    # A boolean is an Integral to Python, but min_examples=True is a mistake, not 1.
    with pytest.raises(ValueError, match=f"^The '{parameter}' parameter of "):
        build()


def test_task_library_names_are_still_importable_from_tasks():
    for name in task_library.__all__:
        assert getattr(tasks, name) is getattr(task_library, name)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        tasks.no_such_name  # noqa: B018


# ----------------------------------------------------------------- end to end
def test_embedding_a_hierarchy_library_of_digits():
    digits = load_digits()
    inputs, labels = (digits.data / 16.0).astype(np.float32), digits.target
    hierarchy = {"digits": ["round", "straight"], "round": [0, 6, 8], "straight": [1, 4, 7]}
    library = hierarchy_tasks(inputs, labels, hierarchy, label_by="child", max_examples=120, random_state=0)
    embedder = FisherTaskEmbedder(random_state=0, head_epochs=20)
    embeddings = embedder.fit_transform(library)
    assert embeddings.shape == (3, inputs.shape[1])  # one row per task, one column per probe filter
    assert np.all(np.isfinite(embeddings)) and np.all(embeddings >= 0)
    assert len({row.tobytes() for row in embeddings}) == 3
    # The same library cut from a Dataset (RelabelledSubsets with string labels) embeds the same.
    dataset = TensorDataset(torch.as_tensor(inputs), torch.as_tensor(labels))
    subsets = hierarchy_tasks(dataset, labels, hierarchy, label_by="child", max_examples=120, random_state=0)
    np.testing.assert_allclose(embedder.transform(subsets), embeddings, rtol=1e-6)

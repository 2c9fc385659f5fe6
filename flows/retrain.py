"""Prefect flow ``retrain_model``: the researcher's retraining, schedulable or run on a work pool.

Thin wiring around :func:`models.training.train`; the same code runs from
``alliance retrain``.
"""

from __future__ import annotations

from flows import make_prefect_home
from prefect import flow, get_run_logger

make_prefect_home()  # Prefect's temporary server needs it; made here, not when `flows` is imported


@flow(name="retrain_model", persist_result=False, log_prints=False)
def retrain_model(data_dirs: list[str], version: str, target_recall: float = 0.8,
                  holdout_dirs: list[str] | None = None, unannotated_dirs: list[str] | None = None,
                  activate: bool = False, choice_dirs: list[str] | None = None, strict: bool = False) -> str:
    """Train a classifier on annotated sessions and save it under ``<data dir>/models/<version>/``.

    Parameters
    ----------
    data_dirs : list of str
        Dataset folders (one subfolder per annotated session).
    version : str
        New model version (folder name; never overwritten).
    target_recall : float in (0, 1]
        Recall the flag thresholds are chosen for.
    holdout_dirs : list of str, optional
        Sessions scored by the final model and recorded in its card.
    unannotated_dirs : list of str, optional
        Folders of real recordings without ruptures; the final model's flags per hour on them go in its card.
    activate : bool
        Make it the active model when saved.
    choice_dirs : list of str, optional
        Folders of other real recordings without ruptures (not those of ``unannotated_dirs``): each model kind's
        flags per hour on them take part in choosing between the linear and the tree model
        (:func:`models.transfer.choose_model`).
    strict : bool
        Stop at the first session that cannot be used, instead of setting it aside (named in the log and the card)
        and training on the rest (:func:`models.training.load_dataset`).

    Returns
    -------
    str
        The model folder.

    Raises
    ------
    InputError
        A dataset folder is missing or holds no usable session; with ``strict``, any session that cannot be used
        (a malformed folder, a consent record that does not give research use, a recording the analysis cannot
        take; see :func:`models.dataset.discover_sessions`).
    """
    from models.artifact import activate_model, user_models_dir
    from models.training import train
    from pipeline.settings import Settings

    log = get_run_logger()
    settings = Settings()
    folder = train(data_dirs, version=version, settings=settings, root=user_models_dir(settings.data_dir),
                   target_recall=target_recall, holdout_dirs=holdout_dirs or (),
                   unannotated_dirs=unannotated_dirs or (), choice_dirs=choice_dirs or (), strict=strict,
                   progress=log.info)
    log.info("model %s saved in %s", version, folder)
    if activate:
        activate_model(settings, version)
        log.info("model %s is now the active model", version)
    return str(folder)

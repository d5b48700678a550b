"""Package metadata comes from settings.ini, the single place nbdev and pip both read."""
from configparser import ConfigParser
from glob import glob

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

requirements = cfg.get("requirements", "").split()
statuses = ["1 - Planning", "2 - Pre-Alpha", "3 - Alpha", "4 - Beta", "5 - Production/Stable", "6 - Mature", "7 - Inactive"]
py_versions = ["3.11", "3.12", "3.13"]
classifiers = [
    "Development Status :: " + statuses[int(cfg["status"]) - 1],
    "Intended Audience :: " + cfg["audience"],
    "License :: OSI Approved :: Apache Software License",
    "Natural Language :: " + cfg["language"],
    "Topic :: Scientific/Engineering :: Artificial Intelligence",
] + ["Programming Language :: Python :: " + v for v in py_versions if v >= cfg["min_python"]]
extras = {
    "dev": cfg.get("dev_requirements", "").split(),
    "ray": cfg.get("ray_requirements", "").split(),
}

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    license="Apache-2.0",
    url=cfg["git_url"],
    keywords=cfg["keywords"].split(),
    classifiers=classifiers,
    packages=setuptools.find_packages(include=[cfg["lib_path"], cfg["lib_path"] + ".*"]),
    package_data={cfg["lib_path"]: ["py.typed"]},
    include_package_data=True,
    # the papermill notebooks `lolip grid --execute papermill` runs: <prefix>/share/lolip_nb/experiments when installed
    data_files=[("share/lolip_nb/experiments", sorted(glob("nbs/experiments/*.ipynb")))],
    python_requires=">=" + cfg["min_python"],
    install_requires=requirements,
    extras_require=extras,
    entry_points={
        "console_scripts": cfg.get("console_scripts", "").split(),
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    zip_safe=False,
)

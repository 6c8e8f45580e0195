"""python -m zoo [NAME...] --out DIR [--formats mlir,onnx,torchscript]"""
import sys

from service.cli import main

sys.exit(main(["zoo", "export", *sys.argv[1:]]))

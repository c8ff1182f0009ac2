"""cc_grpc_proto: protoc + grpc_cpp_plugin from /usr/bin, wrapped in a cc_library.

Bazel's native proto rules download their toolchains, so code generation runs the
system protoc in a genrule. Imports are resolved from the repository's proto/ root and
from /usr/include (well-known types, google/protobuf/descriptor.proto).
"""

def cc_grpc_proto(name, srcs, deps = [], grpc = False, import_root = "proto", extra_includes = []):
    """Generates C++ (and optionally gRPC) code for srcs.

    Args:
      name: the cc_library name.
      srcs: .proto files in this package.
      deps: other cc_grpc_proto targets whose protos are imported.
      grpc: also generate the gRPC service code.
      import_root: the repository folder that import paths are relative to.
      extra_includes: absolute folders added to protoc's include path.
    """
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    proto_paths = ["$(location %s)" % s for s in srcs]
    include_args = " ".join(["-I" + i for i in extra_includes])
    root = import_root
    cmd = ("/usr/bin/protoc -I" + root + " -I$(GENDIR)/" + root + " -I/usr/include " + include_args +
           " --cpp_out=$(GENDIR)/" + root)
    if grpc:
        cmd += (" --grpc_out=$(GENDIR)/" + root +
                " --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin")
    cmd += " " + " ".join(proto_paths)
    dep_protos = [d + "_protos" for d in deps]
    native.filegroup(
        name = name + "_protos",
        srcs = srcs + dep_protos,
        visibility = ["//visibility:public"],
    )
    native.genrule(
        name = name + "_gen",
        srcs = srcs + dep_protos,
        outs = outs,
        cmd = cmd,
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        strip_include_prefix = "/" + import_root,
        deps = deps + ["@system//:protobuf"] + (["@system//:grpc"] if grpc else []),
        visibility = ["//visibility:public"],
    )

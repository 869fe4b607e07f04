"""The module graph as Package.swift declares it, checked against the imports of every
Swift file: a target imports only what it declares (a module of this package, or a product
of a dependency), and the layers below the services stay below them. SwiftPM lets an
undeclared import of a module built anyway for another target compile, until a build order
changes; and nothing stops the socket layer from growing a use of a service. Pure text:
no build, no process."""
import os
import re
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Modules of the toolchain and the system: importable without a declaration.
TOOLCHAIN = {"Swift", "Glibc", "Musl", "Darwin", "Foundation", "FoundationEssentials", "Dispatch",
             "Synchronization", "_Concurrency", "Testing", "XCTest"}

# The modules that hold the services: their interface (DatagramService, the counter schema),
# each service, and the launcher that names them.
SERVICES = {"HelloService", "HelloReplies", "HelloChat", "HelloLauncher"}
# The socket layer and the worker: none of them may depend on a service module...
BELOW_SERVICES = {"HelloDatagram", "HelloSocket", "HelloServer"}
# ... but for this one edge: the worker drives a service through its interface
# (DatagramService) and publishes its Counters as their schema lists them. The one place it
# is allowed; any other dependency of these modules on a service fails.
ALLOWED_SERVICE_DEPENDENCIES = {("HelloServer", "HelloService")}

TARGET_KINDS = ("target", "executableTarget", "testTarget", "systemLibrary", "binaryTarget",
                "plugin", "macro")
IMPORT = re.compile(
    r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*"                      # @testable, @preconcurrency, @_exported
    r"(?:(?:public|package|internal|fileprivate|private)\s+)?"  # access-level imports
    r"import\s+(?:(?:struct|class|enum|protocol|typealias|func|var|let)\s+)?"
    r"([A-Za-z_]\w*)", re.MULTILINE)


def _call_body(text, open_paren):
    """The text between the parenthesis at `open_paren` and its match (string literals
    skipped, so a ")" inside one does not end it)."""
    depth, i, in_string = 0, open_paren, False
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth == 0:
                return text[open_paren + 1:i]
        i += 1
    raise ValueError("unbalanced parentheses in Package.swift at %d" % open_paren)


def _strip_comments(text):
    return re.sub(r"//[^\n]*", "", text)


def parse_package(text):
    """{target name: {"kind", "path", "dependencies": set of module names}} from the
    `targets:` of a Package.swift. A dependency is a bare "Name", .target(name:),
    .byName(name:) or .product(name:): its module is its name (true of every product this
    package uses)."""
    text = _strip_comments(text)
    targets = {}
    for match in re.finditer(r"\.(%s)\s*\(" % "|".join(TARGET_KINDS), text):
        body = _call_body(text, match.end() - 1)
        name = re.search(r'^\s*name:\s*"([^"]+)"', body)
        if not name:
            continue  # a .target(name:) inside a dependency list: not a declaration
        path = re.search(r'\bpath:\s*"([^"]+)"', body)
        dependencies = set()
        listed = re.search(r"\bdependencies:\s*\[", body)
        if listed:
            deps = _call_body(body, listed.end() - 1)
            products = set(re.findall(r'\.product\(\s*name:\s*"([^"]+)"', deps))
            rest = re.sub(r"\.product\([^)]*\)", "", deps)
            dependencies = products | set(re.findall(r'"([^"]+)"', rest))
        kind = match.group(1)
        default = os.path.join("Tests" if kind == "testTarget" else "Sources", name.group(1))
        targets[name.group(1)] = {"kind": kind, "path": path.group(1) if path else default,
                                  "dependencies": dependencies}
    return targets


def swift_files(directory):
    for parent, _, names in os.walk(directory):
        for name in sorted(names):
            if name.endswith(".swift"):
                yield os.path.join(parent, name)


def imports(path):
    with open(path, encoding="utf-8") as f:
        return IMPORT.findall(f.read())


def undeclared_imports(root, targets):
    """(file, target, module) for every import a target does not declare."""
    found = []
    for name, target in sorted(targets.items()):
        directory = os.path.join(root, target["path"])
        for path in swift_files(directory):
            for module in imports(path):
                if module == name or module in TOOLCHAIN or module in target["dependencies"]:
                    continue
                found.append((os.path.relpath(path, root), name, module))
    return found


def service_dependencies(root, targets):
    """(where, module, service) for every way a module below the services reaches one:
    through its imports, or through its declared dependencies, at any depth."""
    found = []
    for name in sorted(BELOW_SERVICES & targets.keys()):
        # Its declared dependencies, transitively; the allowed edge is not followed.
        seen, stack = set(), [name]
        while stack:
            module = stack.pop()
            for dependency in targets.get(module, {"dependencies": ()})["dependencies"]:
                if (module, dependency) in ALLOWED_SERVICE_DEPENDENCIES and module == name:
                    continue
                if dependency not in seen:
                    seen.add(dependency)
                    stack.append(dependency)
        for service in sorted(seen & SERVICES):
            found.append(("Package.swift", name, service))
        for path in swift_files(os.path.join(root, targets[name]["path"])):
            for module in imports(path):
                if module in SERVICES and (name, module) not in ALLOWED_SERVICE_DEPENDENCIES:
                    found.append((os.path.relpath(path, root), name, module))
    return found


def readme_map(text):
    """{module: set of what its arrow points to} from the README's module map: the code
    block of `NAME -> A, B` lines, each perhaps followed by a `[PRODUCT, ...]` line."""
    block = re.search(r"```\n(hellod +->.*?)```", text, re.DOTALL)
    if not block:
        return {}
    drawn, current = {}, None
    for line in block.group(1).splitlines():
        arrow = re.match(r"^(\w+)\s+->\s*(.*)$", line)
        if arrow:
            current = arrow.group(1)
            listed = re.sub(r"\([^)]*\)", "", arrow.group(2))  # "(*)", "(nothing)"
            drawn[current] = {m.strip() for m in listed.split(",") if m.strip()}
        elif current and line.strip().startswith("["):
            drawn[current] |= {m.strip() for m in line.strip().strip("[]").split(",") if m.strip()}
    return drawn


class ModuleGraphTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(ROOT, "Package.swift"), encoding="utf-8") as f:
            cls.targets = parse_package(f.read())

    def test_the_parser_finds_the_package_s_targets(self):
        # A parser that found nothing would pass every other test.
        for name in ("HelloDatagram", "HelloSocket", "HelloService", "HelloServer", "hellod", "hello",
                     "HelloSocketTests"):
            self.assertIn(name, self.targets)
        self.assertIn("SystemPackage", self.targets["HelloSocket"]["dependencies"])
        self.assertIn("CSystemd", self.targets["hellod"]["dependencies"])

    def test_every_import_is_declared_in_package_swift(self):
        found = undeclared_imports(ROOT, self.targets)
        if found:
            self.fail("\n".join("%s: %s imports %s, which its target does not declare in Package.swift" % f
                                for f in found))

    def test_the_socket_layer_and_the_worker_do_not_depend_on_services(self):
        found = service_dependencies(ROOT, self.targets)
        if found:
            self.fail("\n".join("%s: %s depends on the service module %s" % f for f in found))

    def test_the_readme_s_module_map_is_package_swift_s(self):
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            drawn = readme_map(f.read())
        self.assertIn("HelloSocket", drawn, "no module map found in README.md")
        modules = {name for name, target in self.targets.items() if target["kind"] != "testTarget"}
        self.assertEqual(set(drawn), modules, "README.md's module map and Package.swift's targets differ")
        for name in sorted(modules):
            self.assertEqual(drawn[name], self.targets[name]["dependencies"],
                             "README.md's arrows from %s differ from Package.swift's dependencies" % name)

    def test_the_allowed_exception_is_still_needed(self):
        # Once the worker no longer needs the services, the exception must go with it.
        for module, service in ALLOWED_SERVICE_DEPENDENCIES:
            self.assertIn(service, self.targets[module]["dependencies"],
                          "%s no longer depends on %s: remove it from ALLOWED_SERVICE_DEPENDENCIES" % (module, service))


if __name__ == "__main__":
    unittest.main()

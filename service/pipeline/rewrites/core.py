"""The core of the graph rewrites: it walks the exported graph and asks the rules; it knows no op.

The user's model stays as written. After torch.export, the graph is re-run through an
interpreter that hands each call to the first rule that takes it (the rules' order is their
priority: a rule listed earlier wins a call that two could take), and the result is exported
again. The node metadata (the user's source lines) is preserved so compile errors still point
at model.py. A rule is one object following Rule's small protocol: adding a rewrite is one rule
in one family module plus its test, never an edit here.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch.fx import traceback as fx_traceback


class Rule:
    """One rewrite. The core calls these, each rule in the rules' order; the defaults do nothing.

    - needs(node): does this node need the rule? Asked before anything is rewritten, of every
      node of the graph `needs_graph` names; when no rule needs any node the program is kept as
      it is (most models), so a rule that is never needed is never applied.
    - prepare(graph_module, layout) -> state: once per export, for decisions across nodes (the
      Linears that share an input, a chain of Linears); it may store constants (layout.store).
    - lay_out(node, layout) -> {key: tensor or tuple of tensors}: the constants one node needs,
      laid out once from the stored weights (layout.weight) and exported in that layout.
    - inputs(program) -> [input with a .shape]: inputs the rule adds to the compiled function.
    - matches(call) -> bool, replace(call) -> value: per call, while the graph runs; the first
      rule whose matches() holds replaces the call, and its `why` is reported as applied.
    - returns(outputs) -> outputs or None: the graph's outputs (a tuple), as the compiled function
      returns them; None leaves them as they are (its needs() is asked of the output node too).
    """
    why = ""   # what the rewrite does, as reported to the user (export.json's "rewrites")
    # "program": torch.export's graph, stored weights lifted to inputs; "module": the graph the
    # rewriter runs (program.module()'s), where stored weights are get_attr nodes
    needs_graph = "program"

    def needs(self, node: torch.fx.Node) -> bool:
        return False

    def prepare(self, graph_module: torch.fx.GraphModule, layout: "_RewrittenModel"):
        return None

    def lay_out(self, node: torch.fx.Node, layout: "_RewrittenModel") -> dict:
        return {}

    def inputs(self, program: torch.export.ExportedProgram) -> list:
        return []

    def matches(self, call: "Call") -> bool:
        return False

    def replace(self, call: "Call"):
        raise NotImplementedError

    def returns(self, outputs: tuple):
        return None


class OpRule(Rule):
    """A rule that takes the calls of some ops (`targets`) whose arguments it applies to.

    applies(target, args) sees the argument values while the graph runs, and their meta values
    (fake tensors) when needs() is asked: the same test decides both, so a model is re-exported
    exactly when some call will be replaced."""
    targets: tuple = ()

    def applies(self, target, args) -> bool:
        return True

    def needs(self, node: torch.fx.Node) -> bool:
        if node.op != "call_function" or node.target not in self.targets:
            return False
        return self.applies(node.target, [a.meta.get("val") if isinstance(a, torch.fx.Node) else a for a in node.args])

    def matches(self, call: "Call") -> bool:
        return call.target in self.targets and self.applies(call.target, call.args)


@dataclass(eq=False)
class Call:
    """One call of the graph as the rewriter runs it, and what a rule may read to replace it."""
    run: "_Rewriter"
    node: torch.fx.Node
    target: object
    args: tuple
    kwargs: dict

    @property
    def constants(self) -> dict:
        """What the rules laid out for this node: {key: tensor or tuple of tensors}."""
        return self.run.constants.get(self.node.name, {})

    def constants_of(self, node_name: str) -> dict:
        """What the rules laid out for another node (a group's shared weight)."""
        return self.run.constants[node_name]

    def value(self, node: torch.fx.Node):
        """The value an earlier node computed in this run (every value is kept)."""
        return self.run.env[node]

    def state(self, rule: Rule):
        """What rule.prepare() returned for this export."""
        return self.run.states[rule]

    def scratch(self, rule: Rule) -> dict:
        """The rule's notes for this run only (values it computed early, shared results)."""
        return self.run.scratch[rule]

    def next_input(self, rule: Rule) -> torch.Tensor:
        """The next of the inputs rule.inputs() added, in their order."""
        return next(self.run.inputs[rule])

    @property
    def unroll_loops(self) -> bool:
        """Loops must be unrolled (EmitC cannot express them)."""
        return self.run.unroll_loops


class _Rewriter(torch.fx.Interpreter):
    """Runs the graph once (while torch.export traces it), each call through the rules."""

    def __init__(self, module, rules, states, constants, inputs, unroll_loops):
        super().__init__(module, garbage_collect_values=False)   # a fold reads an earlier input again
        self.rules = rules
        self.states = states            # rule -> what its prepare() returned
        self.constants = constants      # node name -> {key: tensor laid out for it}
        self.inputs = inputs            # rule -> iterator over the inputs it added
        self.unroll_loops = unroll_loops
        self.scratch = {rule: {} for rule in rules}
        self.applied: set[str] = set()
        self.node = None

    def run_node(self, node):
        self.node = node
        return super().run_node(node)

    def call_function(self, target, args, kwargs):
        call = Call(self, self.node, target, args, kwargs)
        for rule in self.rules:
            if rule.matches(call):
                self.applied.add(rule.why)
                return rule.replace(call)
        return super().call_function(target, args, kwargs)

    def output(self, target, args, kwargs):
        outputs = super().output(target, args, kwargs)
        for rule in self.rules:
            returned = rule.returns(outputs)
            if returned is not None:
                self.applied.add(rule.why)
                outputs = returned
        return outputs


class _RewrittenModel(torch.nn.Module):
    """The exported graph re-run through the rules, with the constants they laid out as buffers.

    It is also the `layout` the rules' prepare() and lay_out() get (weight(), store())."""

    def __init__(self, graph_module, n_inputs, rules, input_counts, unroll_loops):
        super().__init__()
        self.graph_module = graph_module
        self.n_inputs = n_inputs
        self.rules = rules
        self.input_counts = input_counts   # rule -> how many inputs it added, after the model's
        self.unroll_loops = unroll_loops
        self.applied: set[str] = set()
        # weights laid out once here, from the stored ones, and exported as constants in that
        # layout (laid out inside the graph, IREE folds the transpose back into the product)
        self.laid_out: dict[str, dict] = {}   # node name -> {key: buffer name, or a tuple of them}
        self.states = {rule: rule.prepare(graph_module, self) for rule in rules}
        # after every prepare(): buffers are numbered in the order stored, and their names are
        # in the exported program; this order keeps it the same as it has always been
        for node in graph_module.graph.nodes:
            for rule in rules:
                for key, value in rule.lay_out(node, self).items():
                    self.store(node.name, key, value)

    def weight(self, target: str) -> torch.Tensor:
        """A stored weight of the graph, by its get_attr target."""
        return operator.attrgetter(target)(self.graph_module)

    def store(self, node: str, key, value: torch.Tensor | tuple) -> None:
        """Lays out a constant (or a tuple of them) for a node, read back as Call.constants[key]."""
        names = []
        for tensor in value if isinstance(value, tuple) else (value,):
            names.append(f"laid_out_{len(self._buffers)}")
            self.register_buffer(names[-1], tensor)
        self.laid_out.setdefault(node, {})[key] = tuple(names) if isinstance(value, tuple) else names[0]

    def forward(self, *inputs):
        constants = {node: {key: tuple(getattr(self, n) for n in name) if isinstance(name, tuple)
                            else getattr(self, name) for key, name in entries.items()}
                     for node, entries in self.laid_out.items()}
        added = iter(inputs[self.n_inputs:])
        per_rule = {rule: iter([next(added) for _ in range(count)]) for rule, count in self.input_counts.items()}
        rewriter = _Rewriter(self.graph_module, self.rules, self.states, constants, per_rule, self.unroll_loops)
        result = rewriter.run(*inputs[:self.n_inputs])
        self.applied |= rewriter.applied
        return result


def needs_rewrite(program: torch.export.ExportedProgram, rules: list[Rule]) -> bool:
    """Whether any rule needs any node: first on the module graph, then on the program's."""
    module_rules = [r for r in rules if r.needs_graph == "module"]
    if any(rule.needs(node) for node in program.module().graph.nodes for rule in module_rules):
        return True
    program_rules = [r for r in rules if r.needs_graph == "program"]
    return any(rule.needs(node) for node in program.graph.nodes for rule in program_rules)


def apply(program: torch.export.ExportedProgram, example: torch.Tensor | tuple, rules: list[Rule],
          unroll_loops: bool = False):
    """Returns (program, applied rewrite names, inputs the rules added). A no-op for most models.
    example: the model's input, or a tuple of its inputs."""
    if not needs_rewrite(program, rules):
        return program, [], []
    examples = example if isinstance(example, tuple) else (example,)
    added = {rule: rule.inputs(program) for rule in rules}
    inputs = [i for rule_inputs in added.values() for i in rule_inputs]
    wrapper = _RewrittenModel(program.module(), len(examples), rules, {r: len(a) for r, a in added.items()},
                              unroll_loops)
    placeholders = tuple(torch.zeros(i.shape) for i in inputs)
    with fx_traceback.preserve_node_meta():
        rewritten = torch.export.export(wrapper, (*examples, *placeholders))
    return rewritten, sorted(wrapper.applied), inputs

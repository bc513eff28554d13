"""lint_sql: split, tokenize, parse and check each statement, then the file-level rules."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from lockstep.lint import lexer, reading
from lockstep.lint.checks import check_for, classify
from lockstep.lint.checks.base import Context, FileState, Hit, Outcome
from lockstep.lint.directives import Directives, Ignore, read_directives
from lockstep.lint.facts import blocks_traffic
from lockstep.lint.model import (
    Finding,
    LintConfig,
    LintResult,
    Phase,
    StatementInfo,
    is_session_setting,
)
from lockstep.lint.reading import StatementRead, SyntaxProblem
from lockstep.lint.record import Record
from lockstep.lint.rules import COMPATIBILITY_RULES, RULES, Severity
from lockstep.lint.split import LineIndex, RawStatement, split_statements
from lockstep.lint.tokens import QUOTED, WORD, TokenView

_MAX_IDENTIFIER_BYTES = 63

_TREE_KINDS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH"})


@lru_cache(maxsize=8192)
def read_statement(text: str) -> StatementRead:
    """Tokenize, classify and parse one statement; cached by its text, since the operator
    lints the same migrations on every reconcile (the result is never changed), and on disk
    when the command line turned that on."""
    disk = reading.ACTIVE.disk
    if disk is not None:
        found = disk.get(text)
        if found is not None:
            return found
    read = _read(text)
    if disk is not None:
        disk.put(text, read)
    return read


def _read(text: str) -> StatementRead:
    from lockstep.lint import parse

    tokens = lexer.tokenize(text)
    view = TokenView(tokens, text, 0)
    kind, start = classify(view) if view.n else ("", 0)
    if not kind:
        return StatementRead(tokens, kind, start, None, None)
    if kind not in _TREE_KINDS:
        return StatementRead(tokens, kind, start, parse.check(text), None)
    parsed = parse.parse(text)
    if isinstance(parsed, SyntaxProblem):
        return StatementRead(tokens, kind, start, parsed, None)
    if len(parsed) != 1:
        problem = SyntaxProblem("more than one statement where one was expected")
        return StatementRead(tokens, kind, start, problem, None)
    return StatementRead(tokens, kind, start, None, parse.data_facts(parsed[0], text))


def clear_caches() -> None:
    """Forget cached statements (for benchmarks that measure a first lint)."""
    read_statement.cache_clear()


class _Analysed(Record):
    __slots__ = ("in_explicit_block", "outcome", "raw", "transaction")

    raw: RawStatement
    outcome: Outcome
    transaction: int
    in_explicit_block: bool

    def __init__(
        self,
        raw: RawStatement,
        outcome: Outcome,
        transaction: int,
        in_explicit_block: bool,
    ) -> None:
        self.raw = raw
        self.outcome = outcome
        self.transaction = transaction
        self.in_explicit_block = in_explicit_block


DEFAULT_CONFIG = LintConfig()


def lint_sql(sql: str, config: LintConfig = DEFAULT_CONFIG, path: str | None = None) -> LintResult:
    """Lint one migration file. Never raises: problems become findings."""
    return _lint_file(sql, config, path, FileState())


def lint_set(
    files: Sequence[tuple[str, str | None]],
    config: LintConfig = DEFAULT_CONFIG,
    known: FileState | None = None,
) -> list[LintResult]:
    """Lint the files of one migration set, in the order they run: what an earlier file
    establishes (a validated CHECK (c IS NOT NULL), a column's type) counts in the later
    ones. `known` holds facts from before the set (read from the live database)."""
    state = known.carried() if known is not None else FileState()
    results: list[LintResult] = []
    for sql, path in files:
        results.append(_lint_file(sql, config, path, state))
        state = state.carried()
    return results


def _lint_file(sql: str, config: LintConfig, path: str | None, state: FileState) -> LintResult:
    try:
        return _FileLint(sql, config, path, state).run()
    except Exception as error:  # a lint bug must not stop a rollout silently: report it
        return LintResult(
            findings=[
                Finding(
                    rule="unrecognized-statement",
                    severity="error",
                    message=f"The lint failed on this file ({type(error).__name__}: {error}); "
                    "nothing was checked, review it by hand.",
                    help=RULES["unrecognized-statement"].help,
                    line=1,
                    column=1,
                    statement_index=-1,
                    path=path,
                )
            ],
            statements=[],
            phase="contract",
        )


class _FileLint:
    def __init__(self, sql: str, config: LintConfig, path: str | None, state: FileState) -> None:
        self.sql = sql
        self.config = config
        self.path = path
        self.lines = LineIndex(sql)
        self.state = state
        self.file_hits: list[Hit] = []
        """Hits that belong to the file (statement index -1)."""

    # ---------------------------------------------------------------- the pass over statements

    def run(self) -> LintResult:
        split = split_statements(self.sql)
        directives = read_directives(split.comments, split.statements)
        manages = self.config.runner_manages_transactions
        analysed: list[_Analysed] = []
        in_block = False
        block_id = 0
        for raw in split.statements:
            transaction = 0 if manages else (block_id if in_block else -(raw.index + 1))
            self.state.transaction = transaction
            syntax_ignored = any(
                ignore.covers("syntax-error") for ignore in directives.for_statement(raw.index)
            )
            outcome = self.analyse(raw, syntax_ignored)
            if not outcome.transactional:
                transaction = -(raw.index + 1)
            analysed.append(_Analysed(raw, outcome, transaction, in_block and not manages))
            if outcome.transaction_control == "begin":
                if not in_block:
                    block_id = raw.index + 1
                in_block = True
            elif outcome.transaction_control is not None:
                in_block = False
        self.transaction_rules(analysed)
        self.placement_rules(analysed)
        self.timeout_rules(analysed)
        self.backfill_rule(analysed)
        phase = self.phase(analysed, directives)
        findings = self.findings(analysed, directives, phase)
        statements = [self.info(item) for item in analysed]
        return LintResult(findings=findings, statements=statements, phase=phase)

    def analyse(self, raw: RawStatement, syntax_ignored: bool) -> Outcome:
        if raw.problem is not None:
            outcome = _unparsed()
            outcome.hit(
                "syntax-error",
                raw.problem[0],
                f"Syntax error: {raw.problem[1]} (it runs to the end of the file).",
            )
            return outcome
        read = read_statement(raw.text)
        view = TokenView(read.tokens, raw.text, raw.start)
        kind, start = read.kind, read.start
        if not kind:
            outcome = _unparsed()
            outcome.hit(
                "syntax-error",
                raw.start,
                f"Syntax error: {view.text_of(0, 1)!r} does not start a PostgreSQL statement.",
            )
            return outcome
        syntax_hit: Hit | None = None
        if read.problem is not None:
            syntax_hit = Hit(
                "syntax-error", raw.start + read.problem.offset, _syntax_message(read.problem)
            )
            if not syntax_ignored:
                outcome = _unparsed()
                outcome.hits.append(syntax_hit)
                return outcome
        data = read.data
        outcome = Outcome(kind=kind)
        if syntax_hit is not None:
            outcome.hits.append(syntax_hit)
        context = Context(view, data, self.state, self.config, outcome, start)
        try:
            check_for(kind, view)(context)
        except Exception as error:  # keep linting the other statements
            outcome.mixed = True
            outcome.unanalysable = True
            outcome.take_lock("ACCESS EXCLUSIVE")
            outcome.hit(
                "unrecognized-statement",
                raw.start,
                f"The statement could not be analysed ({type(error).__name__}: {error}); "
                "review it by hand.",
            )
        _identifier_lengths(view, outcome)
        return outcome

    # ---------------------------------------------------------------- file-level rules

    def transaction_rules(self, analysed: list[_Analysed]) -> None:
        manages = self.config.runner_manages_transactions
        open_begin: _Analysed | None = None
        for item in analysed:
            control = item.outcome.transaction_control
            if control is None:
                continue
            word = item.outcome.kind
            if control == "begin":
                if manages:
                    item.outcome.hit(
                        "transaction-nesting",
                        item.raw.start,
                        f"{word} in a migration: lockstep already runs each migration in a "
                        "transaction.",
                    )
                elif open_begin is not None:
                    item.outcome.hit(
                        "transaction-nesting",
                        item.raw.start,
                        f"{word} inside the transaction opened on line "
                        f"{self.lines.position(open_begin.raw.start)[0]}.",
                    )
                if open_begin is None:
                    open_begin = item
            else:
                if manages:
                    item.outcome.hit(
                        "transaction-nesting",
                        item.raw.start,
                        f"{word} in a migration ends lockstep's own transaction early.",
                    )
                elif open_begin is None:
                    item.outcome.hit(
                        "transaction-nesting", item.raw.start, f"{word} without a BEGIN."
                    )
                open_begin = None
        if open_begin is not None:
            open_begin.outcome.hit(
                "ban-uncommitted-transaction",
                open_begin.raw.start,
                f"{open_begin.outcome.kind} without a matching COMMIT: the changes are rolled "
                "back when the session ends.",
            )

    def placement_rules(self, analysed: list[_Analysed]) -> None:
        """Statements that cannot run in a transaction block, and retry safety."""
        manages = self.config.runner_manages_transactions
        if manages:
            self.mixed_modes_rule(analysed)
        for item in analysed:
            outcome = item.outcome
            if item.in_explicit_block and not outcome.transactional:
                if outcome.kind == "CREATE INDEX":
                    outcome.hit(
                        "ban-concurrent-index-creation-in-transaction",
                        item.raw.start,
                        "CREATE INDEX CONCURRENTLY inside BEGIN ... COMMIT fails: it cannot "
                        "run in a transaction block.",
                    )
                else:
                    outcome.hit(
                        "non-transactional-in-transaction",
                        item.raw.start,
                        f"{outcome.kind} cannot run inside the BEGIN ... COMMIT block around it.",
                    )
            runs_alone = not outcome.transactional or (not manages and not item.in_explicit_block)
            if runs_alone and outcome.robust is False:
                outcome.hit(
                    "prefer-robust-stmts",
                    item.raw.start,
                    f"{outcome.kind} runs outside a transaction, so it is retried after a "
                    "partial failure; without IF [NOT] EXISTS the retry fails on what the "
                    f"first attempt left behind{outcome.robust_hint}.",
                )

    def mixed_modes_rule(self, analysed: list[_Analysed]) -> None:
        """The runner runs a migration in one transaction, or (when none of its statements
        can run in one) statement by statement: it cannot do both in one file."""
        outside = [item for item in analysed if not item.outcome.transactional]
        inside = [
            item
            for item in analysed
            if item.outcome.transactional
            and item.outcome.transaction_control is None
            and not is_session_setting(item.outcome.kind, item.raw.text)
        ]
        if not outside or not inside:
            return
        first_out, first_in = outside[0], inside[0]
        first_out.outcome.hit(
            "mixed-transaction-modes",
            first_out.raw.start,
            f"{first_out.outcome.kind} cannot run in a transaction, but this migration also "
            f"has statements that run in one ({first_in.outcome.kind} on line "
            f"{self.lines.position(first_in.raw.start)[0]}): lockstep refuses to apply it.",
        )

    def timeout_rules(self, analysed: list[_Analysed]) -> None:
        if self.config.runner_sets_timeouts:
            for item in analysed:
                changed = sorted(item.outcome.settings)
                if changed:
                    item.outcome.hit(
                        "ban-timeout-change",
                        item.raw.start,
                        f"{item.outcome.kind} changes {' and '.join(changed)}, replacing the "
                        "bounded value lockstep's runner sets from the policy.",
                    )
            return
        active = {"lock_timeout": False, "statement_timeout": False}
        rules = {
            "lock_timeout": "require-lock-timeout",
            "statement_timeout": "require-statement-timeout",
        }
        for item in analysed:
            outcome = item.outcome
            active.update(outcome.settings)
            if not blocks_traffic(outcome.lock) or outcome.only_new_tables:
                continue
            for setting, rule in list(rules.items()):
                if not active[setting]:
                    outcome.hit(
                        rule,
                        item.raw.start,
                        f"{outcome.kind} takes {outcome.lock} with no {setting} set before it "
                        "in this file.",
                    )
                    del rules[setting]

    def backfill_rule(self, analysed: list[_Analysed]) -> None:
        """UPDATE/DELETE in the same transaction as DDL on the same table."""
        first_ddl: dict[tuple[int, str], _Analysed] = {}
        for item in analysed:
            if item.outcome.transactional:
                for table in item.outcome.ddl_tables:
                    first_ddl.setdefault((item.transaction, table), item)
        for item in analysed:
            for table, offset, verb in item.outcome.data_changes:
                if table in self.state.created_tables:
                    continue
                ddl = first_ddl.get((item.transaction, table))
                if ddl is None or ddl is item or not item.outcome.transactional:
                    continue
                line = self.lines.position(ddl.raw.start)[0]
                item.outcome.hit(
                    "backfill-in-ddl-transaction",
                    offset,
                    f"{verb} on {table} runs in the same transaction as the {ddl.outcome.kind} "
                    f"on line {line}, so the DDL's lock is held for the whole data change.",
                )

    def phase(self, analysed: list[_Analysed], directives: Directives) -> Phase:
        computed: Phase = "expand"
        for item in analysed:
            classes = item.outcome.classes()
            if (
                "breaking" in classes
                or "data-losing" in classes
                or (item.outcome.unanalysable and self.unreviewed(item, directives))
            ):
                computed = "contract"
        if directives.phase is None:
            return computed
        if directives.phase == "expand" and computed == "contract":
            self.file_hits.append(
                Hit(
                    "phase-override-unsafe",
                    directives.phase_offset,
                    "The file says lockstep:phase=expand but has breaking or data-losing "
                    "statements: it would run while the old version is still live.",
                )
            )
        return "contract" if directives.phase == "contract" else "expand"

    def unreviewed(self, item: _Analysed, directives: Directives) -> bool:
        """Whether a statement the lint could not analyse still reports it (no ignore
        comment or configured ignore covers the finding that says so)."""
        overrides = self.config.severity_overrides
        ignores = directives.for_statement(item.raw.index)
        return any(
            hit.rule in _UNANALYSED_RULES
            and overrides.get(hit.rule, "error") is not None
            and not any(ignore.covers(hit.rule) for ignore in ignores)
            for hit in item.outcome.hits
        )

    # ---------------------------------------------------------------- findings and facts

    def findings(
        self, analysed: list[_Analysed], directives: Directives, phase: Phase
    ) -> list[Finding]:
        file_ignores = directives.file_level
        kept: list[tuple[int, Hit]] = []
        for item in analysed:
            if not item.outcome.hits:
                continue
            ignores = directives.for_statement(item.raw.index)
            for hit in item.outcome.hits:
                if not _suppressed(hit.rule, ignores):
                    kept.append((item.raw.index, hit))
        for hit in self.file_hits:
            if not _suppressed(hit.rule, file_ignores):
                kept.append((-1, hit))
        for ignore in directives.ignores:
            unused = _unused(ignore)
            if unused is not None and not _suppressed(unused.rule, file_ignores):
                kept.append((-1 if ignore.statement is None else ignore.statement, unused))
        overrides = self.config.severity_overrides
        findings: list[Finding] = []
        for index, hit in kept:
            rule = RULES[hit.rule]
            severity = overrides.get(hit.rule, rule.default_severity)
            if severity is None:
                continue
            message = hit.message
            if (
                phase == "contract"
                and self.config.runner_orders_contract
                and hit.rule in COMPATIBILITY_RULES
                and hit.rule not in overrides
                and severity == "error"
            ):
                severity = "warning"
                message += (
                    " As a contract migration it runs only after the old version is gone, "
                    "with a backup first."
                )
            if self.config.live is not None and hit.rule in _WORK and severity != "info":
                severity, message = self.scaled(hit, index, analysed, severity, message)
            line, column = self.lines.position(hit.offset)
            findings.append(
                Finding(
                    rule=hit.rule,
                    severity=severity,
                    message=message,
                    help=hit.help or rule.help,
                    line=line,
                    column=column,
                    statement_index=index,
                    path=self.path,
                )
            )
        findings.sort(key=lambda finding: (finding.line, finding.column, finding.rule))
        return findings

    def scaled(
        self, hit: Hit, index: int, analysed: list[_Analysed], severity: Severity, message: str
    ) -> tuple[Severity, str]:
        """Severity from the live table's size: the estimated time the statement holds its
        lock decides between an error and a warning."""
        live = self.config.live
        assert live is not None
        item = next((a for a in analysed if a.raw.index == index), None)
        table_name = hit.table or (item.outcome.tables[0] if item and item.outcome.tables else None)
        if table_name is None:
            return severity, message
        table = live.find(table_name)
        budget = self.config.blocking_budget
        if table is None:
            if severity == "error":
                severity = "warning"
            return severity, (
                f"{message} {table_name} is not in the live database: it will be new, and "
                "empty unless an earlier migration fills it."
            )
        work = hit.work or _WORK[hit.rule]
        seconds = table.bytes / _BYTES_PER_SECOND[work]
        size = (
            f"On the live database {table.qualified} has about {_count(table.rows)} rows "
            f"({_bytes(table.bytes)}): "
        )
        if seconds < budget:
            return ("warning" if severity == "error" else severity), (
                f"{message} {size}about {_duration(seconds)} under the lock, within the "
                f"{budget:g} s budget."
            )
        return severity, f"{message} {size}estimated {_duration(seconds)} under the lock."

    def info(self, item: _Analysed) -> StatementInfo:
        outcome = item.outcome
        line, column = self.lines.position(item.raw.start)
        return StatementInfo(
            index=item.raw.index,
            text=item.raw.text,
            line=line,
            column=column,
            kind=outcome.kind,
            lock=outcome.lock,
            transactional=outcome.transactional,
            classes=outcome.classes(),
            rewrites=outcome.rewrites,
            tables=tuple(outcome.tables),
            concurrent_index=outcome.concurrent_index,
            if_not_exists=outcome.if_not_exists,
        )


_UNANALYSED_RULES = frozenset({"unrecognized-statement", "syntax-error"})

# Rules whose cost grows with the table, and what the statement does to it. The rates are
# deliberately low estimates for a busy server (a scan reads, a rewrite reads and writes the
# table and rebuilds its indexes, an index build sorts).
_WORK: dict[str, str] = {
    "adding-field-with-default": "rewrite",
    "adding-generated-stored-column": "rewrite",
    "adding-auto-increment-column": "rewrite",
    "changing-column-type": "rewrite",
    "table-rewrite": "rewrite",
    "prefer-repack": "rewrite",
    "adding-not-nullable-field": "scan",
    "adding-foreign-key-constraint": "scan",
    "constraint-missing-not-valid": "scan",
    "changing-column-type-with-check": "scan",
    "changing-column-type-with-not-null": "scan",
    "adding-serial-primary-key-field": "index",
    "disallowed-unique-constraint": "index",
    "adding-exclusion-constraint": "index",
    "require-concurrent-index-creation": "index",
    "require-concurrent-reindex": "index",
}
_BYTES_PER_SECOND = {"scan": 200e6, "rewrite": 50e6, "index": 40e6}


def _count(rows: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rows >= limit:
            return f"{rows / limit:.1f}{suffix}"
    return f"{rows:.0f}"


def _bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{max(seconds * 1000, 1):.0f} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _syntax_message(problem: SyntaxProblem) -> str:
    """PostgreSQL's own wording: "Syntax error at or near ...", "... at end of input"."""
    message = problem.message
    if message.startswith("syntax error"):
        return f"Syntax error{message.removeprefix('syntax error')}."
    return f"Syntax error: {message}."


def _unparsed() -> Outcome:
    # Unknown effect: assume the strongest lock, and no class (not known to be additive).
    outcome = Outcome(kind="UNPARSED", lock="ACCESS EXCLUSIVE")
    outcome.mixed = True
    outcome.unanalysable = True
    return outcome


def _suppressed(rule: str, ignores: list[Ignore]) -> bool:
    for ignore in ignores:
        if ignore.covers(rule):
            ignore.used.add(rule)
            return True
    return False


def _unused(ignore: Ignore) -> Hit | None:
    problems: list[str] = []
    if ignore.unknown:
        problems.append(f"unknown rule id(s) {', '.join(ignore.unknown)}")
    scope = "in this file" if ignore.file_level else "on the next statement"
    if ignore.statement is None and not ignore.file_level:
        problems.append("no statement follows it")
    elif ignore.rules is None:
        if not ignore.used:
            problems.append(f"no finding {scope} to suppress")
    else:
        unused = sorted(ignore.rules - ignore.used - {"unused-ignore"})
        if unused:
            problems.append(f"no {', '.join(unused)} finding {scope}")
    if not problems:
        return None
    return Hit(
        "unused-ignore", ignore.offset, f"Ignore comment suppresses nothing: {'; '.join(problems)}."
    )


def _identifier_lengths(view: TokenView, outcome: Outcome) -> None:
    shortest = _MAX_IDENTIFIER_BYTES // 4  # no character takes more than 4 bytes in UTF-8
    if view.longest <= shortest:
        return
    if view.longest <= _MAX_IDENTIFIER_BYTES and view.source.isascii():
        return  # one byte per character
    kinds = view.kinds
    seen: set[str] = set()
    for i, text in enumerate(view.texts):
        if len(text) <= shortest or kinds[i] not in (WORD, QUOTED):
            continue
        size = len(text.encode())
        if size > _MAX_IDENTIFIER_BYTES and text not in seen:
            seen.add(text)
            outcome.hit(
                "identifier-too-long",
                view.offset(i),
                f"Identifier {text[:20]}... is {size} bytes; PostgreSQL "
                f"truncates it to {_MAX_IDENTIFIER_BYTES}.",
            )

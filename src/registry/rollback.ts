/** The parts of an alias event that rollback needs, oldest first. */
export interface AliasMove {
  action: "set" | "delete" | "rollback";
  to: number | null;
}

/**
 * The stack of targets an alias has been deployed to, replayed from its history.
 *
 * - `set` to a version pushes it (unless it is already on top: re-setting the same version is not a new deployment).
 * - `rollback` pops down to the version it rolled back to, so a rolled-back deployment is gone from the stack and
 *   a second rollback walks further back instead of returning to it (undo, not toggle).
 * - `delete` changes nothing: if the alias is set again, rollback can still return to what it pointed at before.
 */
export function deploymentStack(history: readonly AliasMove[]): number[] {
  const stack: number[] = [];
  for (const event of history) {
    if (event.to === null) continue;
    if (event.action === "set") {
      if (stack.at(-1) !== event.to) stack.push(event.to);
    } else if (event.action === "rollback") {
      while (stack.length > 0 && stack.at(-1) !== event.to) stack.pop();
      if (stack.length === 0) stack.push(event.to);
    }
  }
  return stack;
}

/**
 * Where a rollback of an alias now at `current` goes: the newest earlier entry of its deployment stack that is not
 * `current` and is still usable (not archived). Undefined when there is none.
 */
export function rollbackTarget(
  history: readonly AliasMove[],
  current: number,
  usable: (version: number) => boolean,
): number | undefined {
  const stack = deploymentStack(history);
  while (stack.length > 0) {
    const top = stack.pop();
    if (top !== undefined && top !== current && usable(top)) return top;
  }
  return undefined;
}

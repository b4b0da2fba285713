/** `/proc/PID/stat` as the agent reads it: whether a recorded pid is still the same process, and when a task began. */

/**
 * The fields of a `/proc/PID/stat` line after the command name, which may hold spaces and parentheses and
 * so ends at the last ')': index 0 is the state (field 3), index 19 the start time in clock ticks (field 22).
 */
export function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

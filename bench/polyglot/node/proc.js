// CPU time of a process read from /proc, for the benchmark programs of this folder.
import fs from 'node:fs';

/** CPU seconds of a process and of its child processes (a server that runs as several). */
export function procSeconds(pid) {
  let ticks = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[1]: the parent
    if (name === String(pid) || fields[1] === String(pid)) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100; // utime + stime are in USER_HZ ticks
}

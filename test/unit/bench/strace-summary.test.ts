import { parseStraceSummary } from '../../../bench/support/strace';

// `strace -c -f -o FILE` as strace 6.1 writes it (rows with and without an errors column).
const SUMMARY = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ------------------
 74.90    0.008643         135        64         7 futex
 18.57    0.002143         535         4           epoll_pwait
  1.00    0.000115           1        63           rt_sigaction
  0.62    0.000071           2        26        13 fcntl
  0.00    0.000000           0         6           clone3
------ ----------- ----------- --------- --------- ------------------
100.00    0.011539          16       163        20 total
`;

test('bench/syscalls.ts reads the calls of each system call and the total from strace -c, with or without errors', () => {
  expect(Object.fromEntries(parseStraceSummary(SUMMARY))).toEqual({
    futex: 64,
    epoll_pwait: 4,
    rt_sigaction: 63,
    fcntl: 26,
    clone3: 6,
    total: 163,
  });
});

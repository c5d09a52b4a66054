// leak.js: a Node workload driven line by line on stdin, like memwork.
//   leak N   retain N MiB more: half in V8's heap (arrays of numbers), half
//            in Buffers (allocated outside it, by Node through malloc)
//   nop      answer once start-up is over
const readline = require('readline');
const kept = [];
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'leak') {
    for (let i = 0; i < Number(arg); i++) {
      const a = new Array(65536); // 64 Ki doubles, 512 KiB
      for (let j = 0; j < a.length; j++) a[j] = j + 0.5;
      kept.push(a, Buffer.alloc(512 << 10, 1));
    }
    console.log('ok');
  } else if (cmd === 'nop') {
    console.log('ok');
  } else if (cmd === 'exit') {
    process.exit(0);
  } else {
    console.log('err unknown command');
  }
});

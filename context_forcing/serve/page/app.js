// The live page: one WebSocket, one session. Sends start / move / prompt / pause / resume (JSON); shows frames
// as they stream and the memory (which past frames sit in sink / slow / fast, with admission decisions).
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_EVENTS = 12;          // admission decisions listed (older ones drop off)
const thumbs = new Map();       // frame index -> PNG data URL, only for frames still in memory
const queue = [];               // frames waiting to be shown at the video's frame rate
let ws = null, hello = null, started = false, paused = false, received = 0, held = 0;

function send(message) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message)); }
function showError(text) { $("error").textContent = text; }

function connect() {
  ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onmessage = (event) => handle(JSON.parse(event.data));
  ws.onclose = () => { $("status").textContent = "disconnected"; setControls(false); };
}

function handle(m) {
  if (m.type === "hello") return onHello(m);
  if (m.type === "refused") { $("status").textContent = "refused"; return showError(m.message); }
  if (m.type === "error") return showError(m.message);
  if (m.type === "opening" || m.type === "chunk") return onChunk(m);
}

function onHello(m) {
  hello = m;
  $("status").textContent = `${m.preset} · ${m.checkpoint} · ${m.layout}`;
  $("layout").textContent = m.layout;
  const attrs = $("attributes");
  for (const [name, size] of Object.entries(m.attributes)) {
    const label = document.createElement("label");
    label.textContent = name + " ";
    const select = document.createElement("select");
    select.id = `attr-${name}`;
    for (let v = 0; v < size; v++) select.add(new Option(String(v), String(v)));
    label.appendChild(select);
    attrs.appendChild(label);
  }
  for (const p of m.policies) $("policy").add(new Option(p, p));
  $("start").disabled = false;
}

function setControls(on) {
  for (const id of ["pause", "left", "right"]) $(id).disabled = !on;
  $("prompt-box").disabled = !on;
}

function onChunk(m) {
  for (const f of m.frames) { thumbs.set(f.index, f.png); queue.push(f); }
  received += m.frames.length;
  if (queue.length > 9) queue.splice(0, queue.length - 3);  // fell behind: jump to the newest chunk
  $("frames-received").textContent = received;
  $("time").textContent = m.seconds.toFixed(2);
  $("camera-x").textContent = m.camera_x;
  $("chunk-ms").textContent = m.chunk_ms;
  $("admissions").textContent = m.admissions;
  $("candidates").textContent = m.candidates;
  if (m.type === "opening") {
    setControls(true);
    for (const [name, value] of Object.entries(m.prompt)) $(`attr-${name}`).value = String(value);
  }
  if (m.switch) {
    $("prompt-status").textContent =
      `switched (${m.switch.policy}) before frame ${m.switch.at_frame} in ${m.switch.ms} ms`;
  }
  showMemory(m.memory);
  showEvents(m.events, m.frames_done);
}

function showMemory(memory) {
  const inMemory = new Set();
  for (const part of ["sink", "slow", "fast"]) {
    const box = $(`memory-${part}`);
    box.replaceChildren();
    for (const slot of memory[part]) {
      inMemory.add(slot.frame);
      const cell = document.createElement("div");
      cell.className = "thumb";
      const img = document.createElement("img");
      img.src = thumbs.get(slot.frame) || "";
      img.dataset.frame = slot.frame;
      img.title = `frame ${slot.frame}, position ${slot.position}`;
      const caption = document.createElement("span");
      caption.textContent = `${slot.frame}@${slot.position}`;
      cell.append(img, caption);
      box.appendChild(cell);
    }
  }
  // keep thumbnails only for frames still in memory (and the frames waiting to be shown)
  for (const index of thumbs.keys()) {
    if (!inMemory.has(index) && !queue.some((f) => f.index === index)) thumbs.delete(index);
  }
}

function showEvents(events, framesDone) {
  const list = $("events");
  for (const e of events) {
    const item = document.createElement("li");
    item.className = e.admitted ? "admitted" : "dropped";
    const span = `${e.candidate[0]}-${e.candidate[e.candidate.length - 1]}`;
    item.textContent = `frames ${span} left fast: ${e.admitted ? "admitted to slow" : "dropped"}`;
    list.prepend(item);
  }
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

function play() {
  const f = queue.shift();
  if (f) { $("frame").src = f.png; $("frame").dataset.index = f.index; }
}

function setMove(move) {
  if (!started || move === held) return;
  held = move;
  send({ type: "move", move });
}

document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
    e.preventDefault();
    setMove(e.key === "ArrowLeft" ? -1 : 1);
  }
});
document.addEventListener("keyup", (e) => {
  if ((e.key === "ArrowLeft" && held === -1) || (e.key === "ArrowRight" && held === 1)) setMove(0);
});
for (const [id, move] of [["left", -1], ["right", 1]]) {
  $(id).addEventListener("pointerdown", () => setMove(move));
  $(id).addEventListener("pointerup", () => setMove(0));
  $(id).addEventListener("pointerleave", () => setMove(0));
}

$("start").addEventListener("click", () => {
  if (started) return;
  started = true;
  $("start").disabled = true;
  send({ type: "start", seed: Number($("seed").value), prefill_seconds: Number($("prefill").value) });
});
$("pause").addEventListener("click", () => {
  paused = !paused;
  send({ type: paused ? "pause" : "resume" });
  $("pause").textContent = paused ? "Resume" : "Pause";
});
$("switch").addEventListener("click", () => {
  const prompt = {};
  for (const name of Object.keys(hello.attributes)) prompt[name] = Number($(`attr-${name}`).value);
  send({ type: "prompt", prompt, policy: $("policy").value });
  $("prompt-status").textContent = "switch sent; applies before the next chunk";
});

// leaving the page ends the session at once (a page kept in the back/forward cache would keep its socket open)
window.addEventListener("pagehide", () => { if (ws) ws.close(1000, "page closed"); });

$("start").disabled = true;
setInterval(play, 250);  // 4 frames per second: the presets' latent frame rate
connect();

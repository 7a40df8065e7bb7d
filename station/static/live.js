// The page's live feed: rows the server rendered (escaped) arrive as server-sent events.
// New passages go to the top of the newest, unfiltered passages page; alarms go to the alarm
// panel on every page, with a short tone. No libraries, nothing fetched from elsewhere.
"use strict";
(function () {
  if (document.body.dataset.signedIn !== "1" || !window.EventSource) return;
  const source = new EventSource("/live");

  function tone() {
    try {
      const audio = new AudioContext();
      const oscillator = audio.createOscillator();
      const gain = audio.createGain();
      oscillator.frequency.value = 880;
      gain.gain.value = 0.2;
      oscillator.connect(gain).connect(audio.destination);
      oscillator.start();
      oscillator.stop(audio.currentTime + 0.6);
      document.body.dataset.tones = String(Number(document.body.dataset.tones || 0) + 1);
    } catch (error) {
      // no audio device: the panel is still shown
    }
  }

  source.addEventListener("passage", function (message) {
    const item = JSON.parse(message.data);
    const body = document.querySelector("#events tbody");
    if (document.body.dataset.live !== "1" || !body || document.getElementById("ev-" + item.id)) return;
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    body.insertAdjacentHTML("afterbegin", item.html);
    body.firstElementChild.classList.add("fresh");
    const total = document.getElementById("total");
    if (total) {
      total.dataset.count = String(Number(total.dataset.count) + 1);
      total.textContent = total.dataset.template.replace("{n}", total.dataset.count);
    }
  });

  source.addEventListener("alarm", function (message) {
    const item = JSON.parse(message.data);
    const list = document.getElementById("alarm-list");
    if (!list) return;
    for (const li of list.children) if (li.dataset.alarm === item.id) return;
    list.insertAdjacentHTML("afterbegin", item.html);
    document.getElementById("alarm-panel").hidden = false;
    tone();
  });
})();

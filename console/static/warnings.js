"use strict";
(() => {
  const list = document.getElementById("warnlist");
  const draw = () => Y.renderList(list);
  Y.on("loaded", draw); Y.on("warning", draw); Y.on("progress", draw);
  document.getElementById("filters").addEventListener("change", draw);
  Y.autoload = true;
  Y.connect();
})();

// Scriptorium console: progressive enhancement only. Every page works without this script.
"use strict";

(function () {
  // Live regions: while the body carries data-live="<ms>", re-fetch this page and swap every
  // [data-live-region] element for its fresh copy. The HTML comes from this server, already
  // escaped and sanitised; DOMParser documents never run scripts.
  function refresh() {
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) {
        if (response.redirected) { return null; }  // signed out: stop; the next click shows the sign-in
        if (!response.ok) { throw new Error(String(response.status)); }  // e.g. 429: try again later
        return response.text();
      })
      .then(function (text) {
        if (text === null) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live-region]").forEach(function (region) {
          var replacement = region.id && fresh.getElementById(region.id);
          if (replacement) { region.replaceWith(document.importNode(replacement, true)); }
        });
        document.body.dataset.live = fresh.body.dataset.live || "";
        enhance();
        schedule();
      })
      .catch(function () { schedule(); });
  }

  function schedule() {
    var every = parseInt(document.body.dataset.live || "", 10);
    if (every > 0) { window.setTimeout(refresh, every); }
  }

  // Formulas: span.math / div.math hold escaped TeX; typeset them with the vendored KaTeX.
  function typeset() {
    if (!window.katex) { return; }
    document.querySelectorAll(".markdown .math:not([data-typeset])").forEach(function (node) {
      var tex = node.textContent;
      try {
        window.katex.render(tex, node, { displayMode: node.tagName === "DIV", throwOnError: false, trust: false });
      } catch (error) {
        node.textContent = tex;
      }
      node.setAttribute("data-typeset", "1");
    });
  }

  // Page viewer: hovering or clicking a box highlights its block's text, and the other way round.
  function highlight(index, scroll) {
    document.querySelectorAll("[data-block].active").forEach(function (node) { node.classList.remove("active"); });
    if (index === null) { return; }
    document.querySelectorAll('[data-block="' + index + '"]').forEach(function (node) { node.classList.add("active"); });
    var item = document.getElementById("block-" + index);
    if (scroll && item) { item.scrollIntoView({ block: "nearest", behavior: "smooth" }); }
  }

  function wireBlocks() {
    document.querySelectorAll("[data-block]:not([data-wired])").forEach(function (node) {
      node.setAttribute("data-wired", "1");
      var index = node.getAttribute("data-block");
      node.addEventListener("mouseenter", function () { highlight(index, false); });
      node.addEventListener("click", function () { highlight(index, true); });
    });
  }

  // Upload: disable the button while the file streams up, so one click is one document.
  function wireUpload() {
    var form = document.getElementById("upload-form");
    if (!form || form.dataset.wired) { return; }
    form.dataset.wired = "1";
    form.addEventListener("submit", function () {
      var button = form.querySelector("button[type=submit]");
      if (button) { button.disabled = true; button.textContent = "Uploading…"; }
    });
  }

  function enhance() {
    typeset();
    wireBlocks();
    wireUpload();
  }

  document.addEventListener("DOMContentLoaded", function () {
    enhance();
    schedule();
  });
})();

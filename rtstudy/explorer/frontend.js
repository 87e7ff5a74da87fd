// rtstudy.explorer: plotly's FigureWidget front end, evaluated once per page
// The _esm of the explorer's FigureWidgets (rtstudy.explorer.widgets fills in the page-wide
// slot's name, and the URL the page serves plotly's widget module at or else its source).
const key = Symbol.for(__KEY__);
const load = (url, source) => {
  if (url) return import(new URL(url, document.baseURI).href);
  const blob = URL.createObjectURL(new Blob([source], {type: "text/javascript"}));
  return import(blob).finally(() => URL.revokeObjectURL(blob));
};
globalThis[key] ??= load(__URL__, __SOURCE__);
const plotly = await globalThis[key];

// Draw once the element is on the page and displayed: anywidget calls render before that
// (Voila keeps its cells hidden until they all ran), and plotly lays a figure out for its
// element's width when it first draws it (later size changes: plotly's responsive config).
const shown = (el, signal) => new Promise((resolve) => {
  const check = () => (signal?.aborted || (el.isConnected && el.getClientRects().length > 0)
                       ? resolve() : requestAnimationFrame(check));
  check();
});
export default () => {
  const widget = plotly.default();
  return {
    initialize: (ctx) => widget.initialize(ctx),
    async render(ctx) {
      await shown(ctx.el, ctx.signal);
      return ctx.signal?.aborted ? undefined : widget.render(ctx);
    },
  };
};

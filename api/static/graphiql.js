// coopnet's GraphiQL page (api/graphiql_page.py): no inline script, no CDN. The page's
// configuration (the GraphQL path and the tabs) is a JSON block in the HTML.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("graphiql-config").textContent);
  var url = new URL(config.url, window.location.href);
  var socket = new URL(url.href);
  socket.protocol = url.protocol === "https:" ? "wss:" : "ws:";

  // Subscriptions run over the websocket; GraphiQL passes the headers pane's headers as
  // its connection_params, where the server reads the token (api/events.py).
  var fetcher = GraphiQL.createFetcher({ url: url.href, subscriptionUrl: socket.href });

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultTabs: config.tabs,
      defaultEditorToolsVisibility: "headers",
      isHeadersEditorEnabled: true,
      // Tokens stay out of the browser's storage.
      shouldPersistHeaders: false,
      inputValueDeprecation: true,
    })
  );
})();

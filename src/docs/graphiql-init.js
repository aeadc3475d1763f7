// GraphiQL for Jjongal: queries and mutations over POST /graphql, subscriptions over
// /graphql/ws (graphql-transport-ws). The Authorization header typed into GraphiQL's
// header editor is sent with both (for the socket, in connection_init).
(function () {
  "use strict";
  var http = GraphiQL.createFetcher({ url: "/graphql" });
  var wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql/ws";

  function authorization(headers) {
    if (!headers) return undefined;
    return headers.Authorization || headers.authorization;
  }

  function isSubscription(params) {
    var query = (params && params.query) || "";
    var name = params && params.operationName;
    var pattern = name
      ? new RegExp("subscription\\s+" + name + "\\b")
      : /^\s*subscription\b/m;
    return pattern.test(query.replace(/#[^\n]*/g, ""));
  }

  function fetcher(params, options) {
    if (!isSubscription(params)) {
      return http(params, options);
    }
    var auth = authorization(options && options.headers);
    var client = graphqlWs.createClient({
      url: wsUrl,
      lazy: true,
      connectionParams: auth ? { Authorization: auth } : {},
    });
    var results = client.iterate({
      query: params.query,
      variables: params.variables,
      operationName: params.operationName,
    });
    return {
      [Symbol.asyncIterator]: function () {
        return {
          next: function () { return results.next(); },
          return: function () {
            var done = results.return ? results.return() : Promise.resolve({ done: true, value: undefined });
            return done.finally(function () { client.dispose(); });
          },
        };
      },
    };
  }

  // For the browser check in CI (and the curious): the fetcher GraphiQL uses.
  window.jjongalGraphiQL = { fetcher: fetcher };

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
      defaultHeaders: '{\n  "Authorization": "Bearer <access token from POST /api/v1/auth/token>"\n}',
      defaultQuery:
        "# Jjongal GraphQL. Put your access token in the Headers tab below.\n" +
        "query Me {\n  me { id name age createdAt }\n}\n\n" +
        "query Stories {\n  stories(first: 5) {\n    edges { node { id title status } }\n    pageInfo { hasNextPage endCursor }\n  }\n}\n\n" +
        "# subscription Watch($id: ID!) { storyUpdated(id: $id) { status title } }\n",
    })
  );
})();

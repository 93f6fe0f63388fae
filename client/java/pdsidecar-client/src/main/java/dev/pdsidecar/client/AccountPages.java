package dev.pdsidecar.client;

import dev.pdsidecar.v1.AccountInfo;
import dev.pdsidecar.v1.ListAccountsRequest;
import dev.pdsidecar.v1.ListAccountsResponse;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.function.Function;

/**
 * A project's accounts, page by page, fetched lazily: the first page on the first {@code
 * next()}, each later one (with the previous page's {@code next_page_token}) only when the caller
 * steps past the current one, ending after the page whose token is empty. A failed fetch throws
 * {@link CredentialsException} from the {@code next()} that made it. Each {@link #iterator()}
 * starts again from the first page.
 *
 * <pre>{@code
 * for (ListAccountsResponse page : client.accountPages("proj_abc", 50)) { ... }
 * for (AccountInfo account : client.accountPages("proj_abc", 50).accounts()) { ... }
 * }</pre>
 */
public final class AccountPages implements Iterable<ListAccountsResponse> {
  private final ListAccountsRequest first;
  private final Function<ListAccountsRequest, ListAccountsResponse> fetch;

  AccountPages(
      ListAccountsRequest first, Function<ListAccountsRequest, ListAccountsResponse> fetch) {
    this.first = first;
    this.fetch = fetch;
  }

  @Override
  public Iterator<ListAccountsResponse> iterator() {
    return new Iterator<>() {
      private String nextToken = first.getPageToken();
      private boolean started;

      @Override
      public boolean hasNext() {
        return !started || !nextToken.isEmpty();
      }

      @Override
      public ListAccountsResponse next() {
        if (!hasNext()) {
          throw new NoSuchElementException("no page after the last one");
        }
        ListAccountsResponse page = fetch.apply(first.toBuilder().setPageToken(nextToken).build());
        started = true;
        nextToken = page.getNextPageToken();
        return page;
      }
    };
  }

  /** The same listing flattened to accounts (pages still fetched one at a time, lazily). */
  public Iterable<AccountInfo> accounts() {
    return () ->
        new Iterator<>() {
          private final Iterator<ListAccountsResponse> pages = iterator();
          private Iterator<AccountInfo> current = java.util.Collections.emptyIterator();

          @Override
          public boolean hasNext() {
            while (!current.hasNext() && pages.hasNext()) {
              current = pages.next().getAccountsList().iterator();
            }
            return current.hasNext();
          }

          @Override
          public AccountInfo next() {
            if (!hasNext()) {
              throw new NoSuchElementException("no account after the last one");
            }
            return current.next();
          }
        };
  }
}
